"""Hyper-parameters of the decoder-only transformer (focal.models.transformer)."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
REMAT = ("none", "block", "dots")
ATTENTION = ("auto", "xla", "splash")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama 3.x RoPE frequency scaling (HF `rope_type: llama3`).

  Wavelengths longer than original_max_position_embeddings / low_freq_factor are stretched by
  `factor`, those shorter than original_max_position_embeddings / high_freq_factor are kept, and
  the band between is interpolated smoothly (see `rope_frequencies`).
  """
  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int

  def __post_init__(self):
    if self.factor <= 0 or self.original_max_position_embeddings <= 0:
      raise ValueError(f"rope scaling factor and original_max_position_embeddings must be > 0, "
                       f"got {self.factor} and {self.original_max_position_embeddings}")
    if not 0 < self.low_freq_factor < self.high_freq_factor:
      raise ValueError(f"rope scaling needs 0 < low_freq_factor < high_freq_factor, got "
                       f"{self.low_freq_factor} and {self.high_freq_factor}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of the transformer.

  `dtype` is the compute dtype ('float32' or 'bfloat16'); `param_dtype` the storage dtype of the
  parameters (float32 by default; bfloat16 halves their memory, e.g. for a frozen reference).
  `qk_norm` adds per-head RMSNorms on queries and keys (Qwen3); `rope_scaling` is None or a
  `RopeScaling` (Llama 3.x).
  `max_seq_len` bounds prompt + generated length (checked by the sampling helpers; RoPE itself is
  computed on the fly and has no table to overflow).

  How the same model is computed (`COMPUTE_FIELDS`, with `dtype`: they change no parameter, and
  no result beyond float rounding):
  `remat` rematerialises each layer of the scanned stack in the backward pass: 'none' keeps every
  activation, 'block' keeps only each layer's input, 'dots' also keeps the outputs of its
  weight matmuls (jax.checkpoint_policies.dots_with_no_batch_dims_saveable).
  `attention` picks the kernel of multi-token attention: 'xla' (einsums, exact softmax in
  float32), 'splash' (the Pallas TPU splash kernel jax ships; on another platform it runs in the
  Pallas interpreter, slowly: for tests), 'auto' (splash on TPU, xla elsewhere). One-token
  decode steps always use 'xla'.
  `logits_chunk` is how many positions the log-prob pass sends through the LM head at once
  (0: as many as make about 2^26 logits), so [N, L, V] float32 logits never exist together.

  `family` names the Hugging Face family (focal.models.families) the model is read as and
  exported as; '' (a scale) exports as the family its features imply. Like the compute fields it
  changes no parameter and no result, so two configs that differ only in it are equal.
  """
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  d_ff: int
  rope_theta: float = 10000.0
  rms_eps: float = 1e-6
  tie_embeddings: bool = True
  qkv_bias: bool = False
  dtype: str = "float32"
  max_seq_len: int = 2048
  qk_norm: bool = False
  rope_scaling: RopeScaling | None = None
  param_dtype: str = "float32"
  remat: str = "none"
  attention: str = "auto"
  logits_chunk: int = 0
  family: str = dataclasses.field(default="", compare=False)

  def __post_init__(self):
    for field in ("dtype", "param_dtype"):
      if getattr(self, field) not in _DTYPES:
        raise ValueError(f"{field} must be one of {sorted(_DTYPES)}, got {getattr(self, field)!r}")
    if self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
      raise ValueError(f"rope_scaling must be None or a RopeScaling, got {self.rope_scaling!r}")
    if self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
      raise ValueError(
          f"n_heads ({self.n_heads}) must be a positive multiple of n_kv_heads ({self.n_kv_heads})")
    if self.head_dim % 2:
      raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
    for field, choices in (("remat", REMAT), ("attention", ATTENTION)):
      if getattr(self, field) not in choices:
        raise ValueError(f"{field} must be one of {choices}, got {getattr(self, field)!r}")
    if self.logits_chunk < 0:
      raise ValueError(f"logits_chunk must be >= 0 (0 = automatic), got {self.logits_chunk}")

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]

  @property
  def storage_dtype(self):
    return _DTYPES[self.param_dtype]

  @property
  def logits_rows(self) -> int:
    """Positions per chunk of the log-prob pass (`logits_chunk`, or the automatic size)."""
    if self.logits_chunk:
      return self.logits_chunk
    return max(128, (2 ** 26 // self.vocab_size) // 128 * 128)


# Fields that say how the model is computed, not what it is: a checkpoint's config.json does not
# hold them, and a policy trained with other values is still the checkpoint's architecture.
COMPUTE_FIELDS = ("dtype", "remat", "attention", "logits_chunk")
