"""Seeded policies for the export round trip (tests/test_hf_export.py, tools/make_hf_fixture.py).

Every parameter is a multiple of 1/256 in [-0.25, 0.25] (norm scales: 1 + a multiple of 1/64),
drawn with numpy's legacy RandomState, whose stream numpy keeps stable. Such values are exact in
float32 and bfloat16, so an export has the same bytes on every machine, and the golden logits
transformers computed for it once hold for the CI's re-export.

    python tests/hf_export_models.py OUT_DIR     # exports every model to OUT_DIR/<name>
"""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focal.models.hf_export import export_checkpoint  # noqa: E402
from focal.models.transformer import ModelConfig, RopeScaling, abstract_model  # noqa: E402

_BYTE = dict(vocab_size=260, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
             d_ff=48, max_seq_len=64)
MODELS = {
    "byte_llama": ModelConfig(**_BYTE),
    "byte_qwen2": ModelConfig(**_BYTE, qkv_bias=True, tie_embeddings=False, rope_theta=1e6,
                              rms_eps=1e-5),
    "byte_qwen3": ModelConfig(**{**_BYTE, "head_dim": 16}, qk_norm=True),
    "byte_llama3_bf16": ModelConfig(**_BYTE, tie_embeddings=False, param_dtype="bfloat16",
                                    rope_scaling=RopeScaling(8.0, 1.0, 4.0, 16)),
}
# A synthetic-task-like prompt: the golden logits are for BOS + its bytes.
PROMPT = "9,2,7->"


def seeded_params(config: ModelConfig, seed: int = 0):
  """(graphdef, params) of `config` with the grid-valued parameters described above."""
  graphdef, abstract = abstract_model(config)
  rng = np.random.RandomState(seed)

  def draw(key_path, leaf):
    is_norm = any(getattr(k, "key", None) == "scale" for k in key_path)
    if is_norm:
      values = 1.0 + rng.randint(-16, 17, size=leaf.shape) / 64.0
    else:
      values = rng.randint(-64, 65, size=leaf.shape) / 256.0
    return jnp.asarray(values.astype(np.float32), dtype=leaf.dtype)

  return graphdef, jax.tree_util.tree_map_with_path(draw, abstract)


def export_all(out_dir: str) -> dict[str, str]:
  """Export every model of MODELS to out_dir/<name>; returns {name: directory}."""
  dirs = {}
  for name, config in MODELS.items():
    _, params = seeded_params(config)
    dirs[name] = os.path.join(out_dir, name)
    export_checkpoint(dirs[name], config, params)
  return dirs


if __name__ == "__main__":
  for name, directory in export_all(sys.argv[1]).items():
    print(name, directory)
