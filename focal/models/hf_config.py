"""Hugging Face `config.json` <-> ModelConfig, for the Llama 3.x, Qwen2/2.5 and Qwen3 families.

The family comes from `model_type` (or, without one, `architectures[0]`); the two must agree when
both are given. Anything the transformer does not implement (sliding-window layers, a RoPE type
other than default/llama3, partial rotary, biases outside q/k/v, quantisation, another
activation) is a ValueError naming the field, never a silently different model.

Both RoPE spellings are read: transformers<5 writes `rope_theta` and `rope_scaling`,
transformers>=5 writes `rope_parameters` ({rope_type, rope_theta, ...}). `config_to_hf` writes
both spellings; exports are checked against transformers 5 (tests/data/hf_export_golden.json).
"""
from __future__ import annotations

from focal.models.transformer import ModelConfig, RopeScaling

# model_type -> the architecture class transformers instantiates for it.
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size")
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor",
                "original_max_position_embeddings")


def model_family(hf: dict) -> str:
  """'llama', 'qwen2' or 'qwen3' from config.json's model_type / architectures."""
  by_arch = {arch: family for family, arch in ARCHITECTURES.items()}
  archs = hf.get("architectures") or []
  model_type = hf.get("model_type")
  if model_type is not None and model_type not in ARCHITECTURES:
    raise ValueError(f"unsupported model_type {model_type!r} (config.json field 'model_type'); "
                     f"supported: {', '.join(ARCHITECTURES)}")
  if archs and archs[0] not in by_arch:
    raise ValueError(f"unsupported architecture {archs[0]!r} (config.json field "
                     f"'architectures'); supported: {', '.join(by_arch)}")
  if archs and model_type is not None and by_arch[archs[0]] != model_type:
    raise ValueError(f"config.json says model_type {model_type!r} but architectures "
                     f"{archs[0]!r}")
  if model_type is None and not archs:
    raise ValueError("config.json has neither 'model_type' nor 'architectures'")
  return model_type or by_arch[archs[0]]


def _rope(hf: dict) -> tuple[float, RopeScaling | None]:
  """(rope_theta, llama3 scaling or None) from either RoPE spelling."""
  params = dict(hf.get("rope_parameters") or {})
  params.update(hf.get("rope_scaling") or {})  # transformers 5 lets rope_scaling win too
  kind = params.get("rope_type", params.get("type", "default"))
  theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
  partial = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
  if partial not in (None, 1, 1.0):
    raise ValueError(f"partial rotary embeddings are not supported (field "
                     f"'partial_rotary_factor' = {partial})")
  if kind == "default":
    return theta, None
  if kind != "llama3":
    raise ValueError(f"unsupported RoPE type {kind!r} (field 'rope_scaling' / "
                     f"'rope_parameters'); supported: default, llama3")
  missing = [k for k in _LLAMA3_KEYS if k not in params]
  if missing:
    raise ValueError(f"llama3 RoPE scaling is missing {missing} (field 'rope_scaling')")
  return theta, RopeScaling(
      factor=float(params["factor"]), low_freq_factor=float(params["low_freq_factor"]),
      high_freq_factor=float(params["high_freq_factor"]),
      original_max_position_embeddings=int(params["original_max_position_embeddings"]))


def _check_features(hf: dict, family: str) -> None:
  """ValueError naming the first config feature the transformer does not implement."""
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    raise ValueError(f"unsupported activation {act!r} (field 'hidden_act'); only 'silu'")
  if hf.get("quantization_config"):
    raise ValueError("quantized checkpoints are not supported (field 'quantization_config')")
  if hf.get("mlp_bias", False):
    raise ValueError("MLP bias is not supported (field 'mlp_bias')")
  if family != "qwen2" and hf.get("attention_bias", False):
    raise ValueError(f"{family} attention_bias=True (a bias on o_proj too) is not supported "
                     "(field 'attention_bias')")
  sliding = [t for t in hf.get("layer_types") or [] if t != "full_attention"]
  windowed = hf.get("use_sliding_window", False) and hf.get("sliding_window") is not None
  # As in transformers: with the window on, layers from max_window_layers (default 28) slide.
  if sliding or (windowed and hf.get("max_window_layers", 28) < hf["num_hidden_layers"]):
    raise ValueError("sliding-window attention is not supported (fields 'use_sliding_window', "
                     "'layer_types')")


def config_from_hf(hf: dict, *, dtype: str = "float32", param_dtype: str = "float32",
                   **compute) -> ModelConfig:
  """Translate a Llama/Qwen2/Qwen3 `config.json` dict into a ModelConfig.

  compute: how to compute it (ModelConfig's remat, attention, logits_chunk), which config.json
  does not hold.
  """
  family = model_family(hf)
  missing = [field for field in _REQUIRED if field not in hf]
  if missing:
    raise ValueError(f"config.json is missing field(s) {missing}")
  _check_features(hf, family)
  n_heads = hf["num_attention_heads"]
  # Qwen3Config defaults head_dim to 128; the others derive it from the width.
  default_head_dim = 128 if family == "qwen3" else hf["hidden_size"] // n_heads
  theta, scaling = _rope(hf)
  return ModelConfig(
      vocab_size=hf["vocab_size"],
      d_model=hf["hidden_size"],
      n_layers=hf["num_hidden_layers"],
      n_heads=n_heads,
      n_kv_heads=hf.get("num_key_value_heads") or n_heads,
      head_dim=hf.get("head_dim") or default_head_dim,
      d_ff=hf["intermediate_size"],
      rope_theta=theta,
      rms_eps=float(hf.get("rms_norm_eps", 1e-6)),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      qkv_bias=family == "qwen2",
      dtype=dtype,
      max_seq_len=int(hf.get("max_position_embeddings", 2048)),
      qk_norm=family == "qwen3",
      rope_scaling=scaling,
      param_dtype=param_dtype,
      **compute,
  )


def family_of(config: ModelConfig) -> str:
  """The HF family that implements `config` exactly."""
  if config.qkv_bias and config.qk_norm:
    raise ValueError("no Hugging Face family has both q/k/v biases and q/k norms")
  return "qwen2" if config.qkv_bias else "qwen3" if config.qk_norm else "llama"


def config_to_hf(config: ModelConfig, **token_ids) -> dict:
  """A config.json dict that transformers (4.x or 5.x) loads as `config`'s architecture.

  token_ids: bos_token_id, eos_token_id, pad_token_id (ints or None) to record.
  """
  family = family_of(config)
  rope = {"rope_type": "default", "rope_theta": config.rope_theta}
  scaling = None
  if config.rope_scaling is not None:
    scaling = {"rope_type": "llama3", "factor": config.rope_scaling.factor,
               "low_freq_factor": config.rope_scaling.low_freq_factor,
               "high_freq_factor": config.rope_scaling.high_freq_factor,
               "original_max_position_embeddings":
                   config.rope_scaling.original_max_position_embeddings}
    rope = {**scaling, "rope_theta": config.rope_theta}
  hf = {
      "architectures": [ARCHITECTURES[family]], "model_type": family,
      "vocab_size": config.vocab_size, "hidden_size": config.d_model,
      "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
      "num_key_value_heads": config.n_kv_heads, "head_dim": config.head_dim,
      "intermediate_size": config.d_ff, "hidden_act": "silu",
      "max_position_embeddings": config.max_seq_len, "rms_norm_eps": config.rms_eps,
      "tie_word_embeddings": config.tie_embeddings,
      "rope_theta": config.rope_theta, "rope_scaling": scaling, "rope_parameters": rope,
      "torch_dtype": config.param_dtype, "dtype": config.param_dtype, "use_cache": True,
  }
  if family == "llama":
    hf.update(attention_bias=False, mlp_bias=False)
  else:
    hf.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.n_layers)
  if family == "qwen3":
    hf.update(attention_bias=False)
  hf.update({k: v for k, v in token_ids.items() if v is not None})
  return hf
