"""A tiny random Qwen3 checkpoint with a real chat template, for the real-data loop tests.

The tokenizer and template are tests/data/hf_chat_qwen3's (Qwen3's own template over a small
locally trained tokenizer); the weights are random, so responses are noise, which is all a test
of the plumbing needs: prompts rendered by the template, stops from generation_config.json.
"""
from __future__ import annotations

import json
import os
import shutil

import jax

from focal.models.hf_config import config_to_hf
from focal.models.hf_export import export_checkpoint
from focal.models.transformer import ModelConfig, init_model
from focal.tokenizers import HFTokenizer

CHAT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "hf_chat_qwen3")


TINY = dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=48)


def make_chat_checkpoint(directory: str, seed: int = 0, **shape) -> str:
  """Writes the checkpoint to `directory`; `shape` replaces ModelConfig fields of TINY's
  (benchmarks/eval_memory.py makes a 24M-parameter one)."""
  tokenizer = HFTokenizer.from_directory(CHAT)
  config = ModelConfig(vocab_size=tokenizer.vocab_size, **{**TINY, **shape}, qk_norm=True,
                       max_seq_len=1024)
  _, params = init_model(config, jax.random.key(seed))
  source = directory + ".source"
  os.makedirs(source, exist_ok=True)
  for name in os.listdir(CHAT):
    if name != "expected.json":
      shutil.copy(os.path.join(CHAT, name), source)
  with open(os.path.join(source, "config.json"), "w") as f:
    json.dump(config_to_hf(config, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id), f)
  export_checkpoint(directory, config, params, source=source)
  shutil.rmtree(source)
  return directory
