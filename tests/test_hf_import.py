"""focal.models.hf_import / hf_config: logit parity with transformers on tiny random checkpoints
(written once by tools/make_hf_fixture.py), config translation and its errors, and loading."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from focal.models import forward, positions_from_mask
from focal.models.hf_config import config_from_hf, config_to_hf
from focal.models.hf_import import hf_shapes, load_hf_checkpoint, place_tensors
from focal.models.safetensors_io import index_directory, load_arrays, save_arrays, write_checkpoint
from focal.models.transformer import RopeScaling, abstract_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
FIXTURES = ["hf_tiny_qwen2", "hf_tiny_llama", "hf_tiny_qwen3", "hf_tiny_llama3"]


def _references(directory):
  ref = np.load(os.path.join(directory, "reference.npz"))
  count = sum(1 for k in ref.files if k.startswith("tokens_"))
  return [(ref[f"tokens_{i}"], ref[f"logits_{i}"]) for i in range(count)]


_forward = jax.jit(forward, static_argnums=0)  # one compile beats eager dispatch of every op


def _logits(graphdef, state, seq):
  tokens = jnp.asarray(seq)[None]
  logits, _ = _forward(graphdef, state, tokens, jnp.arange(len(seq))[None],
                       jnp.ones_like(tokens, bool))
  return np.asarray(logits[0])


def _hf_config(fixture):
  with open(os.path.join(DATA, fixture, "config.json")) as f:
    return json.load(f)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_logits_match_transformers(fixture):
  directory = os.path.join(DATA, fixture)
  _, graphdef, state = load_hf_checkpoint(directory)
  refs = _references(directory)
  for seq, expected in refs:
    assert np.abs(_logits(graphdef, state, seq) - expected).max() < 1e-4
  # All sequences in one left-padded batch give the same logits at the real positions.
  width = max(len(seq) for seq, _ in refs)
  tokens = np.zeros((len(refs), width), np.int32)
  mask = np.zeros((len(refs), width), bool)
  for i, (seq, _) in enumerate(refs):
    tokens[i, width - len(seq):], mask[i, width - len(seq):] = seq, True
  logits, _ = _forward(graphdef, state, jnp.asarray(tokens),
                       positions_from_mask(jnp.asarray(mask)), jnp.asarray(mask))
  for i, (seq, expected) in enumerate(refs):
    assert np.abs(np.asarray(logits[i, width - len(seq):]) - expected).max() < 1e-4


@pytest.mark.parametrize("fixture,change", [("hf_tiny_llama3", {"rope_scaling": None}),
                                             ("hf_tiny_qwen3", {"qk_norm": False,
                                                                "family": "llama"})])
def test_parity_needs_the_feature(fixture, change):
  """Without Llama 3 scaling or Qwen3's q/k norms the logits are far off: parity is not vacuous."""
  directory = os.path.join(DATA, fixture)
  config = dataclasses.replace(config_from_hf(_hf_config(fixture)), **change)
  tensors = {name: info for name, info in index_directory(directory).items()
             if not name.endswith(("q_norm.weight", "k_norm.weight"))}
  graphdef, state = place_tensors(config, tensors)
  seq, expected = _references(directory)[-1]
  assert np.abs(_logits(graphdef, state, seq) - expected).max() > 1e-2


def test_config_translation():
  llama = config_from_hf(_hf_config("hf_tiny_llama"), dtype="bfloat16")
  assert (llama.head_dim, llama.n_kv_heads, llama.rope_theta, llama.qkv_bias, llama.qk_norm,
          llama.tie_embeddings, llama.dtype, llama.param_dtype) == (
              8, 1, 500.0, False, False, True, "bfloat16", "float32")
  qwen2 = config_from_hf(_hf_config("hf_tiny_qwen2"), param_dtype="bfloat16")
  assert (qwen2.head_dim, qwen2.rope_theta, qwen2.qkv_bias, qwen2.tie_embeddings,
          qwen2.param_dtype) == (4, 1e6, True, False, "bfloat16")
  qwen3 = config_from_hf(_hf_config("hf_tiny_qwen3"))
  assert (qwen3.head_dim, qwen3.qk_norm, qwen3.qkv_bias, qwen3.rope_scaling) == (
      8, True, False, None)
  llama3 = config_from_hf(_hf_config("hf_tiny_llama3"))
  assert llama3.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 64) and llama3.rope_theta == 1e4


def test_transformers4_style_llama31_config():
  """Llama-3.1-8B-Instruct's config.json as transformers 4 wrote it (rope_theta, rope_scaling)."""
  hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
        "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
        "mlp_bias": False, "num_attention_heads": 32, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "vocab_size": 128256}
  cfg = config_from_hf(hf)
  assert (cfg.head_dim, cfg.n_kv_heads, cfg.rope_theta, cfg.max_seq_len) == (128, 8, 5e5, 131072)
  assert cfg.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 8192)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_config_to_hf_round_trips(fixture):
  cfg = config_from_hf(_hf_config(fixture))
  assert config_from_hf(config_to_hf(cfg)) == cfg


@pytest.mark.parametrize("fixture,edit,message", [
    ("hf_tiny_qwen2", {"model_type": "mistral", "architectures": ["MistralForCausalLM"]},
     "unsupported model_type 'mistral'"),
    ("hf_tiny_qwen2", {"model_type": None, "architectures": ["GemmaForCausalLM"]},
     "unsupported architecture 'GemmaForCausalLM'"),
    ("hf_tiny_qwen2", {"architectures": ["LlamaForCausalLM"]}, "model_type 'qwen2' but"),
    ("hf_tiny_qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1},
     "sliding-window"),
    ("hf_tiny_qwen3", {"layer_types": ["full_attention", "sliding_attention"]}, "sliding-window"),
    ("hf_tiny_qwen3", {"attention_bias": True}, "'attention_bias'"),
    ("hf_tiny_llama", {"attention_bias": True}, "'attention_bias'"),
    ("hf_tiny_llama", {"mlp_bias": True}, "'mlp_bias'"),
    ("hf_tiny_llama", {"hidden_act": "gelu"}, "'hidden_act'"),
    ("hf_tiny_llama", {"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
    ("hf_tiny_llama", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "'yarn'"),
    ("hf_tiny_llama", {"rope_parameters": {"rope_type": "llama3", "factor": 4.0}},
     "missing .*low_freq_factor"),
    ("hf_tiny_llama", {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
])
def test_unsupported_features_are_named(fixture, edit, message):
  hf = _hf_config(fixture)
  hf.update(edit)
  with pytest.raises(ValueError, match=message):
    config_from_hf(hf)
  # A window that no layer uses (max_window_layers >= layers, as in transformers) is accepted.
  config_from_hf({**_hf_config(fixture), "use_sliding_window": True, "sliding_window": 16,
                  "max_window_layers": 2, "layer_types": None})


def _copy(tmp_path, fixture="hf_tiny_qwen2", edit_tensors=None):
  arrays = load_arrays(os.path.join(DATA, fixture))
  if edit_tensors:
    edit_tensors(arrays)
  save_arrays(str(tmp_path / "model.safetensors"), arrays)
  shutil.copy(os.path.join(DATA, fixture, "config.json"), tmp_path)
  return str(tmp_path)


def test_missing_tensor_is_named(tmp_path):
  d = _copy(tmp_path, edit_tensors=lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
  with pytest.raises(ValueError,
                     match=r"missing tensor 'model\.layers\.1\.self_attn\.k_proj\.bias'"):
    load_hf_checkpoint(d)


def test_misshaped_tensor_is_named(tmp_path):
  def shrink(t):
    t["model.layers.0.mlp.up_proj.weight"] = t["model.layers.0.mlp.up_proj.weight"][:-1]
  d = _copy(tmp_path, edit_tensors=shrink)
  with pytest.raises(ValueError, match=r"'model\.layers\.0\.mlp\.up_proj\.weight' has shape "
                                       r"\(31, 16\), expected \(32, 16\)"):
    load_hf_checkpoint(d)


def test_unused_tensor_is_an_error(tmp_path):
  """A qwen3 checkpoint (q/k norms) under a config claiming llama must not load silently."""
  d = _copy(tmp_path, "hf_tiny_qwen3")
  hf = _hf_config("hf_tiny_qwen3")
  hf.update(model_type="llama", architectures=["LlamaForCausalLM"])
  (tmp_path / "config.json").write_text(json.dumps(hf))
  with pytest.raises(ValueError, match=r"tensors the model does not use, e\.g\. \['model\.layers"
                                       r"\.0\.self_attn\.k_norm\.weight'"):
    load_hf_checkpoint(d)


def test_tokenizer_vocab_mismatch():
  d = os.path.join(DATA, "hf_tiny_qwen2")
  with pytest.raises(ValueError, match=r"tokenizer vocab size 300 exceeds .* vocab_size 96"):
    load_hf_checkpoint(d, tokenizer_vocab_size=300)
  load_hf_checkpoint(d, tokenizer_vocab_size=90)  # padded embedding rows are fine


def test_sharded_checkpoint_and_bfloat16_params(tmp_path):
  src = os.path.join(DATA, "hf_tiny_llama3")
  arrays = load_arrays(src)
  specs = {name: (a.dtype, a.shape) for name, a in arrays.items()}
  files = write_checkpoint(str(tmp_path), specs, arrays.__getitem__, max_shard_bytes=8 << 10)
  assert "model.safetensors.index.json" in files and len(files) > 3
  shutil.copy(os.path.join(src, "config.json"), tmp_path)
  _, _, plain = load_hf_checkpoint(src)
  _, _, sharded = load_hf_checkpoint(str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, plain, sharded)
  config, _, half = load_hf_checkpoint(str(tmp_path), param_dtype="bfloat16")
  assert config.param_dtype == "bfloat16"
  assert {x.dtype for x in jax.tree.leaves(half)} == {jnp.dtype(jnp.bfloat16)}
  rounded = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16), plain)
  jax.tree.map(np.testing.assert_array_equal, rounded, half)


SHARDED_LOAD = r"""
import json, sys
import jax, numpy as np
from focal import sharding
from focal.models.hf_import import load_hf_checkpoint
mesh = sharding.make_mesh((1, 2, 4))
_, _, state = load_hf_checkpoint(sys.argv[1], mesh=mesh)
_, _, plain = load_hf_checkpoint(sys.argv[1])
expected = sharding.named(mesh, sharding.param_specs(state, mesh))
specs = {}
def check(path, x, want, ref):
  name = sharding.path_str(path)
  assert x.sharding == want, (name, x.sharding, want)
  np.testing.assert_array_equal(np.asarray(x), np.asarray(ref))
  for shard in x.addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data), np.asarray(ref)[shard.index])
  specs[name] = [a for a in want.spec]
jax.tree_util.tree_map_with_path(check, state, expected, plain)
print(json.dumps({"devices": jax.device_count(), "specs": specs}))
"""


def test_sharded_load_on_eight_devices(tmp_path):
  """A Qwen2-shaped checkpoint read straight onto a (data 1, fsdp 2, tensor 4) CPU mesh."""
  cfg = dataclasses.replace(config_from_hf(_hf_config("hf_tiny_qwen2")), vocab_size=512,
                            d_model=64, head_dim=16, d_ff=128)
  (tmp_path / "config.json").write_text(json.dumps(config_to_hf(cfg)))
  rng = np.random.default_rng(0)
  arrays = {name: rng.standard_normal(shape, np.float32)
            for name, shape in hf_shapes(abstract_model(cfg)[1], cfg.n_layers).items()}
  save_arrays(str(tmp_path / "model.safetensors"), arrays)
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  out = subprocess.run([sys.executable, "-c", SHARDED_LOAD, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 8
  specs = result["specs"]
  # Stacked layer parameters: the leading layer axis is never sharded.
  assert specs["layers/attn/q_proj/kernel"] == [None, "fsdp", "tensor"]
  assert specs["layers/attn/o_proj/kernel"] == [None, "tensor", "fsdp"]
  assert specs["layers/attn/k_proj/bias"] == [None, "tensor"]
  assert specs["embed"] == ["tensor", "fsdp"]
  assert specs["final_norm/scale"] == [None]
