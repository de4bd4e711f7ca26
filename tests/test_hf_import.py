"""Tests for focal.models.hf_import: logit parity with transformers (fixtures made by
tools/make_hf_fixture.py), the numpy safetensors reader, and the error messages."""
import json
import os
import shutil
import struct

import jax.numpy as jnp
import numpy as np
import pytest

from focal.models import forward, positions_from_mask
from focal.models.hf_import import (config_from_hf, load_hf_checkpoint, read_checkpoint_tensors,
                                    read_safetensors)

DATA = os.path.join(os.path.dirname(__file__), "data")
FIXTURES = ["hf_tiny_qwen2", "hf_tiny_llama"]


def _write_safetensors(path, tensors, dtypes=None):
  """Minimal writer: header {name: dtype/shape/offsets}, then the raw bytes."""
  dtypes = dtypes or {}
  header, blobs, offset = {}, [], 0
  for name, arr in tensors.items():
    kind = dtypes.get(name, {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}.get(arr.dtype))
    raw = arr.tobytes()
    header[name] = {"dtype": kind, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
  head = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


@pytest.mark.parametrize("fixture", FIXTURES)
def test_logits_match_transformers(fixture):
  directory = os.path.join(DATA, fixture)
  _, graphdef, state = load_hf_checkpoint(directory)
  ref = np.load(os.path.join(directory, "reference.npz"))
  seqs = [ref["tokens_0"], ref["tokens_1"]]
  for i, seq in enumerate(seqs):
    tokens = jnp.asarray(seq)[None]
    logits, _ = forward(graphdef, state, tokens, jnp.arange(len(seq))[None], jnp.ones_like(tokens, bool))
    assert np.abs(np.asarray(logits[0]) - ref[f"logits_{i}"]).max() < 1e-4
  # Both sequences in one left-padded batch give the same logits at the real positions.
  width = max(map(len, seqs))
  tokens = np.zeros((2, width), np.int32)
  mask = np.zeros((2, width), bool)
  for i, seq in enumerate(seqs):
    tokens[i, width - len(seq):], mask[i, width - len(seq):] = seq, True
  logits, _ = forward(graphdef, state, jnp.asarray(tokens), positions_from_mask(jnp.asarray(mask)),
                      jnp.asarray(mask))
  for i, seq in enumerate(seqs):
    assert np.abs(np.asarray(logits[i, width - len(seq):]) - ref[f"logits_{i}"]).max() < 1e-4


def test_config_translation():
  with open(os.path.join(DATA, "hf_tiny_llama", "config.json")) as f:
    cfg = config_from_hf(json.load(f), dtype="bfloat16")
  assert (cfg.head_dim, cfg.n_kv_heads, cfg.rope_theta, cfg.qkv_bias, cfg.tie_embeddings) == (16, 1, 500.0, False, True)
  assert cfg.dtype == "bfloat16"
  with open(os.path.join(DATA, "hf_tiny_qwen2", "config.json")) as f:
    cfg = config_from_hf(json.load(f))
  assert (cfg.rope_theta, cfg.qkv_bias, cfg.tie_embeddings, cfg.rms_eps) == (1e6, True, False, 1e-6)


def test_safetensors_reader_dtypes(tmp_path):
  f32 = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
  f16 = np.array([0.5, -1.25, 3.0], np.float16)
  # bfloat16 of 1.0, -2.0, 0.15625 are exactly the top 16 bits of their float32 encodings.
  bf16_vals = np.array([1.0, -2.0, 0.15625], np.float32)
  bf16_bits = (bf16_vals.view(np.uint32) >> 16).astype(np.uint16)
  path = tmp_path / "x.safetensors"
  _write_safetensors(path, {"a": f32, "b": f16, "c": bf16_bits}, dtypes={"c": "BF16"})
  out = read_safetensors(str(path))
  np.testing.assert_array_equal(out["a"], f32)
  np.testing.assert_array_equal(out["b"], f16)
  assert out["c"].dtype == np.float32
  np.testing.assert_array_equal(out["c"], bf16_vals)


def test_sharded_checkpoint_loads(tmp_path):
  src = os.path.join(DATA, "hf_tiny_qwen2")
  tensors = read_checkpoint_tensors(src)
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
  for shard, shard_names in shards.items():
    _write_safetensors(tmp_path / shard, {n: tensors[n] for n in shard_names})
  index = {"weight_map": {n: s for s, ns in shards.items() for n in ns}}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  shutil.copy(os.path.join(src, "config.json"), tmp_path)
  loaded = read_checkpoint_tensors(str(tmp_path))
  assert sorted(loaded) == names
  load_hf_checkpoint(str(tmp_path))


def _copy_with(tmp_path, edit_tensors=None, edit_config=None):
  src = os.path.join(DATA, "hf_tiny_qwen2")
  tensors = read_checkpoint_tensors(src)
  with open(os.path.join(src, "config.json")) as f:
    config = json.load(f)
  if edit_tensors:
    edit_tensors(tensors)
  if edit_config:
    edit_config(config)
  _write_safetensors(tmp_path / "model.safetensors", tensors)
  (tmp_path / "config.json").write_text(json.dumps(config))
  return str(tmp_path)


def test_missing_tensor_is_named(tmp_path):
  d = _copy_with(tmp_path, edit_tensors=lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
  with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.1\.self_attn\.k_proj\.bias'"):
    load_hf_checkpoint(d)


def test_misshaped_tensor_is_named(tmp_path):
  def shrink(t):
    t["model.layers.0.mlp.up_proj.weight"] = t["model.layers.0.mlp.up_proj.weight"][:-1]
  d = _copy_with(tmp_path, edit_tensors=shrink)
  with pytest.raises(ValueError, match=r"'model\.layers\.0\.mlp\.up_proj\.weight' has shape \(63, 32\), expected \(64, 32\)"):
    load_hf_checkpoint(d)


def test_unsupported_architecture(tmp_path):
  d = _copy_with(tmp_path, edit_config=lambda c: c.update(architectures=["MistralForCausalLM"]))
  with pytest.raises(ValueError, match="unsupported architecture 'MistralForCausalLM'"):
    load_hf_checkpoint(d)


def test_unsupported_rope_scaling():
  with open(os.path.join(DATA, "hf_tiny_qwen2", "config.json")) as f:
    hf = json.load(f)
  hf["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}
  with pytest.raises(ValueError, match="yarn"):
    config_from_hf(hf)


def test_tokenizer_vocab_mismatch():
  d = os.path.join(DATA, "hf_tiny_qwen2")
  with pytest.raises(ValueError, match=r"tokenizer vocab size 300 exceeds .* vocab_size 256"):
    load_hf_checkpoint(d, tokenizer_vocab_size=300)
  load_hf_checkpoint(d, tokenizer_vocab_size=250)  # padded embedding rows are fine
