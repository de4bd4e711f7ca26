"""Named model scales sized for a 2-core CPU, on a byte-level vocabulary.

Vocabulary (260 ids): ids 0..255 are the raw bytes of UTF-8 text; then four specials
PAD_ID=256, BOS_ID=257, EOS_ID=258, UNK_ID=259.

Parameter counts (tied embeddings): tiny ~0.20M, small ~2.0M, base ~9.9M.
"""
from __future__ import annotations

import dataclasses

import jax

from focal.models.transformer import ModelConfig

N_BYTES = 256
PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
UNK_ID = 259
BYTE_VOCAB_SIZE = 260

SCALES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(vocab_size=BYTE_VOCAB_SIZE, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2,
                        head_dim=16, d_ff=172, max_seq_len=2048),
    "small": ModelConfig(vocab_size=BYTE_VOCAB_SIZE, d_model=128, n_layers=8, n_heads=4, n_kv_heads=2,
                         head_dim=32, d_ff=512, max_seq_len=2048),
    "base": ModelConfig(vocab_size=BYTE_VOCAB_SIZE, d_model=256, n_layers=10, n_heads=8, n_kv_heads=4,
                        head_dim=32, d_ff=1024, max_seq_len=2048),
}


def get_scale(name: str, **overrides) -> ModelConfig:
  """The named config, optionally with fields replaced (e.g. dtype='bfloat16')."""
  if name not in SCALES:
    raise ValueError(f"unknown scale {name!r}; choose from {sorted(SCALES)}")
  return dataclasses.replace(SCALES[name], **overrides)


def param_count(state) -> int:
  """Total number of parameter scalars in an NNX state (or any pytree of arrays)."""
  return int(sum(x.size for x in jax.tree.leaves(state)))
