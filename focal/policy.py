"""The policy a run trains, and how its prompts and responses become tokens and text.

`config.model` picks one of two kinds:
  scale        a named byte-level model of focal.models.scales (random init, then the
               synthetic suite's supervised warm start): `model.checkpoint = ""`.
  checkpoint   a local Hugging Face directory (Qwen2/2.5, Qwen3, Llama 3.x): weights placed
               with the mesh's shardings as they are read, its tokenizer, its chat template
               and its generation config's stop ids.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from focal.models import scales
from focal.models.config import ATTENTION, REMAT
from focal.tokenizers import ByteTokenizer

DTYPES = ("float32", "bfloat16")
_BYTES = ByteTokenizer()
# How the model is computed (ModelConfig's fields of the same names).
COMPUTE = ("remat", "attention", "logits_chunk")


def model_fields(config) -> dict:
  """{scale, checkpoint, dtype, param_dtype, remat, attention, logits_chunk, lora} of a config
  (configs/base.py documents each)."""
  return config.model.to_dict()


def compute_fields(config) -> dict:
  """The model block's fields that say how the model is computed: ModelConfig keywords."""
  m = model_fields(config)
  return {k: m[k] for k in COMPUTE}


def model_name(config) -> str:
  """What a report calls the policy: the scale, or the checkpoint directory's name."""
  m = model_fields(config)
  return m["checkpoint"].rstrip("/").split("/")[-1] if m["checkpoint"] else m["scale"]


def check_model(config) -> None:
  m = model_fields(config)
  choices = {"dtype": DTYPES, "param_dtype": DTYPES, "remat": REMAT, "attention": ATTENTION}
  for field, allowed in choices.items():
    if m[field] not in allowed:
      raise ValueError(f"config.model.{field} must be one of {allowed}, got {m[field]!r}")
  if not isinstance(m["logits_chunk"], int) or m["logits_chunk"] < 0:
    raise ValueError(f"config.model.logits_chunk must be an int >= 0 (0 = automatic), got "
                     f"{m['logits_chunk']!r}")
  if not m["checkpoint"]:
    scales.get_scale(m["scale"])
  lora_config(config)


def lora_config(config):
  """The run's `model.lora` (focal.models.lora.LoRAConfig)."""
  from focal.models.lora import from_fields
  return from_fields(config.model.lora)


@dataclasses.dataclass(frozen=True)
class Tokens:
  """How prompts become ids and rollouts become text for one policy."""
  pad_id: int
  stop_ids: tuple[int, ...]
  encode: Callable        # messages [{role, content}] -> ids (chat template applied)
  decode_response: Callable  # (tokens [L], mask [L]) -> what a judge reads

  @property
  def eos_id(self) -> int:
    return self.stop_ids[0]


def byte_tokens() -> Tokens:
  """The byte vocabulary: a prompt is BOS + its text's bytes; responses decode losslessly."""
  def encode(messages):
    if len(messages) != 1 or messages[0]["role"] != "user":
      raise ValueError("a byte-level policy is prompted with exactly one user message")
    return [scales.BOS_ID] + _BYTES.encode(messages[0]["content"])
  return Tokens(scales.PAD_ID, (scales.EOS_ID,), encode, _BYTES.decode_response)


def _is_byte_vocabulary(tokenizer) -> bool:
  from focal.models.hf_byte_tokenizer import SPECIAL_TOKENS
  return (tokenizer.vocab_size == scales.BYTE_VOCAB_SIZE
          and tokenizer.eos_id == scales.EOS_ID
          and tokenizer.decode([scales.EOS_ID]) in ("", SPECIAL_TOKENS[scales.EOS_ID]))


def checkpoint_tokens(directory: str) -> Tokens:
  """A checkpoint's chat template, tokenizer and stop ids (its weights are not read)."""
  from focal.models.pretrained import load_tokenizer_files, missing_files
  missing = missing_files(directory)
  if missing:
    raise FileNotFoundError(f"config.model.checkpoint={directory} is not a usable Hugging Face "
                            f"checkpoint: missing {', '.join(missing)}")
  tokenizer, chat, stops = load_tokenizer_files(directory)
  encode = lambda messages: chat.encode(messages, tokenizer)
  if _is_byte_vocabulary(tokenizer):  # an exported byte-level policy: keep its lossless text
    return Tokens(tokenizer.pad_id, tuple(stops), encode, _BYTES.decode_response)
  stop_set = set(stops)

  def decode_response(tokens, mask):
    ids = [int(t) for t, m in zip(tokens, mask) if m]
    if ids and ids[-1] in stop_set:
      ids = ids[:-1]
    return tokenizer.decode(ids)

  return Tokens(tokenizer.pad_id, tuple(stops), encode, decode_response)


def tokens_for(config) -> Tokens:
  m = model_fields(config)
  return checkpoint_tokens(m["checkpoint"]) if m["checkpoint"] else byte_tokens()


def model_config(config, source, max_new_tokens: int):
  """The ModelConfig of the run's policy: the scale's, sized for `source`'s prompts plus
  `max_new_tokens`, or the checkpoint's config.json (its weights are not read)."""
  m = model_fields(config)
  if m["checkpoint"]:
    from focal.models.hf_import import read_config
    model_cfg = read_config(m["checkpoint"], dtype=m["dtype"], param_dtype=m["param_dtype"],
                            **compute_fields(config))
    _check_context(model_cfg, source.width, max_new_tokens)
    return model_cfg
  return scales.get_scale(m["scale"], max_seq_len=source.width + max_new_tokens,
                          dtype=m["dtype"], param_dtype=m["param_dtype"], **compute_fields(config))


def abstract_policy(config, source, max_new_tokens: int):
  """(graphdef, params of ShapeDtypeStructs) of the run's policy: its structure, what a saved
  checkpoint's parameters are restored onto; nothing is allocated and no weight file is read."""
  from focal.models.transformer import abstract_model
  return abstract_model(model_config(config, source, max_new_tokens))


def _check_context(model_cfg, width: int, max_new_tokens: int) -> None:
  if width + max_new_tokens > model_cfg.max_seq_len:
    raise ValueError(f"prompts of up to {width} tokens + grpo.max_new_tokens={max_new_tokens} "
                     f"exceed the checkpoint's context of {model_cfg.max_seq_len} (lower "
                     f"data.max_prompt_tokens)")


def init_policy(config, source, max_new_tokens: int, mesh=None, progress: bool = True):
  """(graphdef, params, warm-start losses) of the run's policy.

  A scale is initialised from the seed and warm-started on the synthetic suite (cached);
  a checkpoint is read onto `mesh` (None: the default device) and not warm-started.
  """
  import numpy as np
  from focal.models.transformer import init_model
  m = model_fields(config)
  if m["checkpoint"]:
    from focal.models.pretrained import load_pretrained
    pre = load_pretrained(m["checkpoint"], dtype=m["dtype"], param_dtype=m["param_dtype"],
                          mesh=mesh, **compute_fields(config))
    _check_context(pre.config, source.width, max_new_tokens)
    return pre.graphdef, pre.params, np.zeros((0,), np.float32)
  graphdef, params = init_model(model_config(config, source, max_new_tokens),
                                jax.random.key(config.seed))
  params, losses = warm_start_params(config, source, graphdef, params, progress)
  return graphdef, params, losses


def warm_start_params(config, source, graphdef, params, progress: bool = True):
  """(params, losses) of the config's warm start on `source`'s training prompts, cached
  under `config.warm_start.cache_dir` by everything the result depends on."""
  from focal.warm_start import (cache_file, fingerprint, make_reference_sequences,
                                 supervised_warm_start)
  ws = config.warm_start
  sequences = make_reference_sequences(source.suite, *source.train_prompts,
                                       source.train_set.features,
                                       per_prompt=ws.responses_per_prompt, quality=ws.quality,
                                       seed=config.seed)
  recipe = {k: v for k, v in ws.to_dict().items() if k != "cache_dir"}
  model = model_fields(config)
  if model["dtype"] != "float32":  # float32 compute keeps the key older caches were written under
    recipe["dtype"] = model["dtype"]
  cache = cache_file(ws.cache_dir, task=config.task, model=model["scale"], seed=config.seed,
                     max_new=config.grpo.max_new_tokens,  # sizes the model's context
                     sequences=fingerprint(sequences), init=fingerprint(params), **recipe)
  return supervised_warm_start(graphdef, params, sequences, steps=ws.steps,
                               batch_size=ws.batch_size, learning_rate=ws.learning_rate,
                               seed=config.seed, cache_path=cache, progress=progress)
