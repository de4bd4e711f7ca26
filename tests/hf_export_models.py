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
  """(graphdef, params) of `config` with the grid-valued parameters described above.

  Values are drawn layer by layer (every parameter of layer 0, then of layer 1, ...), the order
  of the per-layer state the golden files were made from; the layers' parameters are stacked.
  """
  graphdef, abstract = abstract_model(config)
  rng = np.random.RandomState(seed)

  def draw(key_path, shape, dtype):
    is_norm = any(getattr(k, "key", None) == "scale" for k in key_path)
    if is_norm:
      values = 1.0 + rng.randint(-16, 17, size=shape) / 64.0
    else:
      values = rng.randint(-64, 65, size=shape) / 256.0
    return values.astype(np.float32).astype(dtype)

  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  is_layer = [getattr(path[0], "key", None) == "layers" for path, _ in leaves]
  values = [None] * len(leaves)
  layer_values = {i: [] for i, layer in enumerate(is_layer) if layer}
  for i, ((path, leaf), layer) in enumerate(zip(leaves, is_layer)):
    if not layer:
      values[i] = draw(path, leaf.shape, leaf.dtype)
    elif i == min(layer_values):  # the first layer leaf: draw every layer's parameters here
      for _ in range(config.n_layers):
        for j in layer_values:
          layer_values[j].append(draw(leaves[j][0], leaves[j][1].shape[1:], leaves[j][1].dtype))
      for j, per_layer in layer_values.items():
        values[j] = np.stack(per_layer)
  return graphdef, jax.tree.unflatten(treedef, [jnp.asarray(v) for v in values])


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
