"""One entry point for a local Hugging Face checkpoint: weights, tokenizer, chat template, stops.

    pre = load_pretrained("ckpts/Qwen3-4B", dtype="bfloat16", param_dtype="float32", mesh=mesh)
    ids = pre.chat.encode([{"role": "user", "content": question}], pre.tokenizer)
    logits, _ = forward(pre.graphdef, pre.params, ...)      # sample until a token in pre.stop_ids

A checkpoint directory needs config.json, model.safetensors (or model.safetensors.index.json and
its shards), tokenizer.json and tokenizer_config.json; generation_config.json is optional (stop
ids then fall back to the tokenizer's EOS). Missing files are reported all at once, before any
weight is read.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

from focal.models.chat import ChatTemplate, stop_ids
from focal.models.hf_import import CONFIG_FILE, load_hf_checkpoint, read_config
from focal.models.safetensors_io import INDEX_FILE, SINGLE_FILE
from focal.models.transformer import ModelConfig
from focal.tokenizers import HFTokenizer


class Pretrained(NamedTuple):
  config: ModelConfig
  graphdef: Any          # nnx.GraphDef of the Transformer
  params: Any            # nnx.State of its parameters, placed with the mesh's shardings
  tokenizer: HFTokenizer
  chat: ChatTemplate
  stop_ids: tuple[int, ...]
  source: str            # the checkpoint directory (absolute)


def missing_files(directory: str) -> list[str]:
  """The required files `directory` lacks (the weights as 'model.safetensors (or index)')."""
  if not os.path.isdir(directory):
    return [f"the directory itself ({directory} does not exist)"]
  def lacks(*names):
    return not any(os.path.exists(os.path.join(directory, n)) for n in names)

  weights = f"{SINGLE_FILE} (or {INDEX_FILE})"
  return [name for name, absent in ((CONFIG_FILE, lacks(CONFIG_FILE)),
                                    (weights, lacks(SINGLE_FILE, INDEX_FILE)),
                                    ("tokenizer.json", lacks("tokenizer.json")),
                                    ("tokenizer_config.json", lacks("tokenizer_config.json")))
          if absent]


def load_tokenizer_files(directory: str) -> tuple[HFTokenizer, ChatTemplate, tuple[int, ...]]:
  """(tokenizer, chat template, stop ids) of a checkpoint, without touching its weights."""
  tokenizer = HFTokenizer.from_directory(directory)
  return tokenizer, ChatTemplate.from_directory(directory), stop_ids(directory, tokenizer)


def load_pretrained(directory: str, *, dtype: str = "float32", param_dtype: str = "float32",
                    mesh=None, **compute) -> Pretrained:
  """Everything a run needs from a local HF checkpoint directory (see the module docstring).

  dtype: compute dtype; param_dtype: parameter storage dtype; mesh: shard the parameters onto
  it (None: the default device). compute: ModelConfig's remat, attention, logits_chunk.
  """
  missing = missing_files(directory)
  if missing:
    raise FileNotFoundError(f"{directory} is not a usable Hugging Face checkpoint: missing "
                            f"{', '.join(missing)}")
  tokenizer, chat, stops = load_tokenizer_files(directory)
  vocab_size = read_config(directory).vocab_size
  if tokenizer.vocab_size > vocab_size:
    raise ValueError(f"{directory}: tokenizer vocab size {tokenizer.vocab_size} exceeds the "
                     f"model's vocab_size {vocab_size} (config.json field 'vocab_size')")
  beyond = [i for i in stops if not 0 <= i < vocab_size]
  if beyond:
    raise ValueError(f"{directory}: stop ids {beyond} (generation_config.json 'eos_token_id') are "
                     f"outside the model's vocabulary [0, {vocab_size})")
  config, graphdef, params = load_hf_checkpoint(directory, dtype=dtype, param_dtype=param_dtype,
                                                mesh=mesh, **compute)
  return Pretrained(config, graphdef, params, tokenizer, chat, stops, os.path.abspath(directory))
