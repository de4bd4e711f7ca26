"""Hugging Face `config.json` <-> ModelConfig, for the registered families (focal.models.families:
Llama 3.x, Qwen2/2.5, Qwen3, and any other registered one).

The family comes from `model_type` (or, without one, `architectures[0]`) through the family
registry; the two must agree when both are given. Anything the transformer does not implement
(sliding-window layers, a RoPE type other than default/llama3, partial rotary, biases outside
q/k/v, quantisation, another activation) is a ValueError naming the field, never a silently
different model.

Both RoPE spellings are read: transformers<5 writes `rope_theta` and `rope_scaling`,
transformers>=5 writes `rope_parameters` ({rope_type, rope_theta, ...}). `config_to_hf` writes
both spellings; exports are checked against transformers 5 (tests/data/hf_export_golden.json).
"""
from __future__ import annotations

from focal.models import families
from focal.models.families import Family
from focal.models.transformer import ModelConfig, RopeScaling

_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size")
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor",
                "original_max_position_embeddings")


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


def _check_features(hf: dict, family: Family) -> None:
  """ValueError naming the first config feature the transformer does not implement."""
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    raise ValueError(f"unsupported activation {act!r} (field 'hidden_act'); only 'silu'")
  if hf.get("quantization_config"):
    raise ValueError("quantized checkpoints are not supported (field 'quantization_config')")
  if hf.get("mlp_bias", False):
    raise ValueError("MLP bias is not supported (field 'mlp_bias')")
  if family.attention_bias_field and hf.get("attention_bias", False):
    raise ValueError(f"{family.model_type} attention_bias=True (a bias on o_proj too) is not "
                     "supported (field 'attention_bias')")
  sliding = [t for t in hf.get("layer_types") or [] if t != "full_attention"]
  windowed = hf.get("use_sliding_window", False) and hf.get("sliding_window") is not None
  # As in transformers: with the window on, layers from max_window_layers (default 28) slide.
  if sliding or (windowed and hf.get("max_window_layers", 28) < hf["num_hidden_layers"]):
    raise ValueError("sliding-window attention is not supported (fields 'use_sliding_window', "
                     "'layer_types')")


def config_from_hf(hf: dict, *, dtype: str = "float32", param_dtype: str = "float32",
                   **compute) -> ModelConfig:
  """Translate a registered family's `config.json` dict into a ModelConfig of that family.

  compute: how to compute it (ModelConfig's remat, attention, logits_chunk), which config.json
  does not hold.
  """
  family = families.from_hf(hf)
  missing = [field for field in _REQUIRED if field not in hf]
  if missing:
    raise ValueError(f"config.json is missing field(s) {missing}")
  _check_features(hf, family)
  n_heads = hf["num_attention_heads"]
  default_head_dim = family.default_head_dim or hf["hidden_size"] // n_heads
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
      qkv_bias=family.qkv_bias,
      dtype=dtype,
      max_seq_len=int(hf.get("max_position_embeddings", 2048)),
      qk_norm=family.qk_norm,
      rope_scaling=scaling,
      param_dtype=param_dtype,
      family=family.model_type,
      **compute,
  )


def config_to_hf(config: ModelConfig, **token_ids) -> dict:
  """A config.json dict that transformers (4.x or 5.x) loads as `config`'s architecture.

  token_ids: bos_token_id, eos_token_id, pad_token_id (ints or None) to record.
  """
  family = families.of_config(config)
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
      "architectures": [family.architectures[0]], "model_type": family.model_type,
      "vocab_size": config.vocab_size, "hidden_size": config.d_model,
      "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
      "num_key_value_heads": config.n_kv_heads, "head_dim": config.head_dim,
      "intermediate_size": config.d_ff, "hidden_act": "silu",
      "max_position_embeddings": config.max_seq_len, "rms_norm_eps": config.rms_eps,
      "tie_word_embeddings": config.tie_embeddings,
      "rope_theta": config.rope_theta, "rope_scaling": scaling, "rope_parameters": rope,
      "torch_dtype": config.param_dtype, "dtype": config.param_dtype, "use_cache": True,
  }
  hf.update(family.config_fields(config))
  hf.update({k: v for k, v in token_ids.items() if v is not None})
  return hf
