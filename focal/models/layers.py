"""The transformer's layers: RMSNorm, linear maps, RoPE, grouped-query attention, SwiGLU.

A `Block` is one layer; the transformer keeps its layers as one Block whose parameters carry a
leading [n_layers] axis and scans over it (focal.models.transformer)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from focal.models.attention import Segment, multi_segment_attention
from focal.models.config import ModelConfig, RopeScaling

_INIT_STD = 0.02  # HF `initializer_range` default for Llama and Qwen2.


def normal_param(rngs: nnx.Rngs, shape, dtype=jnp.float32) -> nnx.Param:
  # Drawn in float32 whatever the storage dtype, so a bfloat16 model is the rounded float32 one.
  return nnx.Param((_INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype))


class RMSNorm(nnx.Module):
  """y = x / sqrt(mean(x^2) + eps) * scale, with the statistics taken in float32."""

  def __init__(self, dim: int, eps: float, param_dtype=jnp.float32):
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (normed * self.scale[...]).astype(x.dtype)


class Linear(nnx.Module):
  """x @ kernel (+ bias) (+ lora_scale * (x @ lora_a) @ lora_b); kernel is [in, out], cast to
  the input's dtype for the matmul. The low-rank adapter (lora_a [in, r], lora_b [r, out]) is
  absent unless focal.models.lora attaches one."""

  def __init__(self, d_in: int, d_out: int, *, bias: bool, rngs: nnx.Rngs,
               param_dtype=jnp.float32):
    self.kernel = normal_param(rngs, (d_in, d_out), param_dtype)
    self.bias = nnx.Param(jnp.zeros((d_out,), param_dtype)) if bias else None
    self.lora_a = nnx.data(None)  # data, not static: an adapter may be attached later
    self.lora_b = nnx.data(None)
    self.lora_scale = 0.0

  def __call__(self, x: jax.Array) -> jax.Array:
    y = dot_2d(x, self.kernel[...].astype(x.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(x.dtype)
    if self.lora_a is not None:
      low = dot_2d(x, self.lora_a[...].astype(x.dtype))
      y = y + self.lora_scale * dot_2d(low, self.lora_b[...].astype(x.dtype))
    return y


def dot_2d(x: jax.Array, kernel: jax.Array, **kwargs) -> jax.Array:
  """x [..., D] @ kernel [D, E] as one 2-D matmul over the flattened leading dims.

  Same maths as `x @ kernel`; the weight gradient of a 3-D dot must sum over two
  dimensions, which XLA's CPU backend does ~1.7x slower (benchmarks/step.py).
  """
  y = jnp.matmul(x.reshape(-1, x.shape[-1]), kernel, **kwargs)
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


def rope_frequencies(head_dim: int, theta: float,
                     scaling: RopeScaling | None = None) -> jax.Array:
  """[head_dim / 2] float32 inverse frequencies theta^(-2i/head_dim), Llama-3-scaled if asked.

  Llama 3 scaling (HF `_compute_llama3_parameters`), with wavelength w = 2 pi / f and
  L = original_max_position_embeddings: f / factor where w > L / low_freq_factor, f where
  w < L / high_freq_factor, and in between (1 - s) f / factor + s f with
  s = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor).
  """
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  if scaling is None:
    return inv_freq
  context = scaling.original_max_position_embeddings
  wavelen = 2 * jnp.pi / inv_freq
  scaled = jnp.where(wavelen > context / scaling.low_freq_factor, inv_freq / scaling.factor,
                     inv_freq)
  smooth = ((context / wavelen - scaling.low_freq_factor)
            / (scaling.high_freq_factor - scaling.low_freq_factor))
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = ((wavelen >= context / scaling.high_freq_factor)
            & (wavelen <= context / scaling.low_freq_factor))
  return jnp.where(medium, smoothed, scaled)


def apply_rope(x: jax.Array, positions: jax.Array, theta: float,
               scaling: RopeScaling | None = None) -> jax.Array:
  """Rotary embedding in the HF "rotate_half" layout (first half / second half of head_dim).

  x: [B, T, H, D]; positions: [B, T] int. Angles are computed in float32.
  """
  half = x.shape[-1] // 2
  inv_freq = rope_frequencies(2 * half, theta, scaling)
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


class LayerCache(NamedTuple):
  """One layer's view of a KV cache that a call writes its T tokens into, then attends over.

  k, v: the cache buffers, [N, Hkv, S, Dh], or the whole stack [n_layers, N, Hkv, S, Dh] of
  which this is layer `layer` (a scanned layer reads and writes its slice in place). mask:
  [N, S] real keys, this call's included. index: the slot of the first token.
  The layer attends over the whole buffer, never a slice of it: on CPU, XLA would copy a
  slice that a matmul reads, and a slice of a buffer written in a loop makes it copy the buffer.
  """
  k: jax.Array
  v: jax.Array
  mask: jax.Array
  index: jax.Array
  layer: jax.Array | None = None

  def put(self, buf: jax.Array, new: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(buf with new [N, Hkv, T, Dh] written at slot `index`, this layer's buffer after it)."""
    new = new.astype(buf.dtype)
    if buf.ndim == 4:
      buf = jax.lax.dynamic_update_slice(buf, new, (0, 0, self.index, 0))
      return buf, buf
    buf = jax.lax.dynamic_update_slice(buf, new[None], (self.layer, 0, 0, self.index, 0))
    return buf, jax.lax.dynamic_index_in_dim(buf, self.layer, keepdims=False)


class Attention(nnx.Module):
  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    pd = cfg.storage_dtype
    q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    self.q_proj = Linear(cfg.d_model, q_dim, bias=cfg.qkv_bias, rngs=rngs, param_dtype=pd)
    self.k_proj = Linear(cfg.d_model, kv_dim, bias=cfg.qkv_bias, rngs=rngs, param_dtype=pd)
    self.v_proj = Linear(cfg.d_model, kv_dim, bias=cfg.qkv_bias, rngs=rngs, param_dtype=pd)
    self.o_proj = Linear(q_dim, cfg.d_model, bias=False, rngs=rngs, param_dtype=pd)
    # Qwen3: one RMSNorm over head_dim shared by all query heads, one by all key heads.
    self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_eps, pd) if cfg.qk_norm else None
    self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_eps, pd) if cfg.qk_norm else None

  def __call__(self, x, positions, query_mask, context: tuple[Segment, ...] = (),
               cache: LayerCache | None = None):
    """x: [N, T, D]; positions [N, T] int; query_mask [N, T] bool (True on real tokens).

    The tokens attend over the `context` segments (a shared prompt prefix, earlier parts of a
    cache) and, causally, over themselves; with a `cache`, they are first written into it and attend over it (causal
    by slot) instead. Returns (out [N, T, D], (k, v)): the updated cache buffers, or without a
    cache the tokens' own keys and values [N, Hkv, T, Dh] (the cache layout).
    """
    cfg = self.cfg
    b, t, _ = x.shape
    q = self.q_proj(x).reshape(b, t, cfg.n_heads, cfg.head_dim)
    k = self.k_proj(x).reshape(b, t, cfg.n_kv_heads, cfg.head_dim)
    v = self.v_proj(x).reshape(b, t, cfg.n_kv_heads, cfg.head_dim)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q = apply_rope(q, positions, cfg.rope_theta, cfg.rope_scaling)
    k = apply_rope(k, positions, cfg.rope_theta, cfg.rope_scaling).transpose(0, 2, 1, 3)
    v = v.transpose(0, 2, 1, 3)
    if cache is None:
      own = Segment(k, v, query_mask, offset=0)
    else:
      (k, k_view), (v, v_view) = cache.put(cache.k, k), cache.put(cache.v, v)
      own = Segment(k_view, v_view, cache.mask, offset=cache.index)
    out = multi_segment_attention(q, (*context, own), query_mask, cfg.attention)
    return self.o_proj(out.reshape(b, t, cfg.n_heads * cfg.head_dim)), (k, v)


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    pd = cfg.storage_dtype
    self.gate_proj = Linear(cfg.d_model, cfg.d_ff, bias=False, rngs=rngs, param_dtype=pd)
    self.up_proj = Linear(cfg.d_model, cfg.d_ff, bias=False, rngs=rngs, param_dtype=pd)
    self.down_proj = Linear(cfg.d_ff, cfg.d_model, bias=False, rngs=rngs, param_dtype=pd)

  def __call__(self, x):
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.storage_dtype)
    self.attn = Attention(cfg, rngs)
    self.mlp_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.storage_dtype)
    self.mlp = MLP(cfg, rngs)

  def __call__(self, x, positions, query_mask, context: tuple[Segment, ...] = (),
               cache: LayerCache | None = None):
    """One layer (see `Attention`): returns (x [N, T, D], (k, v))."""
    h, kv = self.attn(self.attn_norm(x), positions, query_mask, context, cache)
    x = x + h
    x = x + self.mlp(self.mlp_norm(x))
    return x, kv
