"""Write a policy as a Hugging Face checkpoint that transformers (and `load_pretrained`) load.

    export_checkpoint("hf_out", config, params)                      # a byte-vocabulary policy
    export_checkpoint("hf_out", config, params, source="ckpts/qwen")  # trained from a checkpoint

The directory gets config.json (from `hf_config.config_to_hf`: the architecture and model_type
of `config.family`, or for a config naming none of the family its features imply;
focal.models.families), model.safetensors (or shards plus model.safetensors.index.json),
tokenizer.json, tokenizer_config.json (with the chat template) and generation_config.json. A
byte-vocabulary policy (focal.models.scales: 260 ids) gets the byte tokenizer of
`hf_byte_tokenizer`; a policy trained from an HF checkpoint gets that checkpoint's tokenizer
files and config.json, after a check that the config still describes the policy's architecture.

Tensors are written one at a time (each gathered to the host, transposed to HF's [out, in] and
cast), so host memory holds one tensor beyond the policy. Everything is written to
`out_dir + '.partial'` and renamed at the end: a crash never leaves a half-written checkpoint
under the final name.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import ml_dtypes
import numpy as np

from focal.models import families, hf_byte_tokenizer
from focal.models.config import COMPUTE_FIELDS
from focal.models.hf_config import config_from_hf, config_to_hf
from focal.models.families.layout import Layout, hf_tensors
from focal.models.hf_import import CONFIG_FILE, param_path
from focal.models.safetensors_io import write_checkpoint
from focal.models.scales import BOS_ID, BYTE_VOCAB_SIZE, EOS_ID, PAD_ID
from focal.models.transformer import ModelConfig

# Files that make up a checkpoint's tokenizer and generation defaults, copied when present.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json",
                   "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model")
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
FILE_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}
# Fields that may differ between a source checkpoint and the policy trained from it.
_FREE_FIELDS = ("param_dtype", "max_seq_len") + COMPUTE_FIELDS


def _tensor_specs(params, file_dtype, n_layers: int, layout: Layout):
  """{HF name: (dtype, shape)} and {HF name: fetch()} for every parameter, sorted by name.

  A stacked layer parameter gives one tensor per layer; fetching one gathers only that layer.
  """
  specs, fetchers = {}, {}

  def visit(key_path, leaf):
    names, transpose, stacked = hf_tensors(param_path(key_path), n_layers, layout)
    shape = leaf.shape[1:] if stacked else leaf.shape
    for layer, name in enumerate(names):
      specs[name] = (file_dtype, shape[::-1] if transpose else shape)

      def fetch(layer=layer):
        arr = np.asarray(jax.device_get(leaf[layer] if stacked else leaf))
        arr = arr.astype(file_dtype, copy=False)
        return arr.T if transpose else arr

      fetchers[name] = fetch

  jax.tree_util.tree_map_with_path(visit, params)
  order = sorted(specs)
  return {n: specs[n] for n in order}, fetchers


def _source_config(source: str, config: ModelConfig) -> dict:
  """The source's config.json, if it still describes `config`'s architecture."""
  path = os.path.join(source, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"export source {source}: no {CONFIG_FILE}")
  with open(path) as f:
    hf = json.load(f)
  same = {k: getattr(config, k) for k in _FREE_FIELDS}
  if dataclasses.replace(config_from_hf(hf), **same) != config:
    raise ValueError(f"the policy's architecture {config} differs from {path} "
                     f"({config_from_hf(hf)}); export it without source=")
  return hf


def _write_tokenizer(directory: str, source: str | None, config: ModelConfig) -> list[str]:
  if source is None:
    return hf_byte_tokenizer.write_files(directory, max_length=config.max_seq_len)
  missing = [n for n in REQUIRED_TOKENIZER_FILES if not os.path.exists(os.path.join(source, n))]
  if missing:
    raise FileNotFoundError(f"export source {source}: missing {', '.join(missing)}")
  copied = [n for n in TOKENIZER_FILES if os.path.exists(os.path.join(source, n))]
  for name in copied:
    shutil.copy2(os.path.join(source, name), os.path.join(directory, name))
  return copied


def _prepare(out_dir: str, overwrite: bool) -> str:
  if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True (CLI: "
                          "--overwrite) to replace it")
  partial = out_dir.rstrip("/") + ".partial"
  shutil.rmtree(partial, ignore_errors=True)  # a previous crashed export of ours
  os.makedirs(partial)
  return partial


def export_checkpoint(out_dir: str, config: ModelConfig, params, *, source: str | None = None,
                      dtype: str | None = None, max_shard_bytes: int = 5 << 30,
                      overwrite: bool = False) -> list[str]:
  """Write `params` (an nnx params state of `config`) as an HF checkpoint; returns its files.

  source: the HF checkpoint the policy was trained from (None: a byte-vocabulary policy).
  dtype: the stored tensors' dtype ('float32' or 'bfloat16'; default: config.param_dtype).
  """
  dtype = dtype or config.param_dtype
  if dtype not in FILE_DTYPES:
    raise ValueError(f"dtype must be one of {sorted(FILE_DTYPES)}, got {dtype!r}")
  if source is None and config.vocab_size != BYTE_VOCAB_SIZE:
    raise ValueError(f"a policy with vocab_size {config.vocab_size} is not on the byte "
                     f"vocabulary ({BYTE_VOCAB_SIZE}); pass source= the checkpoint it was "
                     "trained from, whose tokenizer it uses")
  if source is None:
    hf = config_to_hf(config, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
  else:
    hf = _source_config(source, config)
  hf.update(torch_dtype=dtype, dtype=dtype)
  partial = _prepare(out_dir, overwrite)
  specs, fetchers = _tensor_specs(params, np.dtype(FILE_DTYPES[dtype]), config.n_layers,
                                  families.of_config(config).tensors)
  files = write_checkpoint(partial, specs, lambda name: fetchers[name](),
                           max_shard_bytes=max_shard_bytes, metadata={"format": "pt"})
  with open(os.path.join(partial, CONFIG_FILE), "w") as f:
    json.dump(hf, f, indent=2)
  files += [CONFIG_FILE] + _write_tokenizer(partial, source, config)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.rename(partial, out_dir)
  return sorted(files)
