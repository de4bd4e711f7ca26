"""Decoder-only transformer (Llama 3.x / Qwen2 / Qwen3 architectures) in Flax NNX.

Architecture: token embedding -> n_layers x [RMSNorm -> grouped-query attention with RoPE ->
residual -> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> LM head (tied to the embedding or
separate). Qwen2 differs from Llama by a bias on the q/k/v projections (`qkv_bias=True`); Qwen3
instead RMS-normalises each query and key head before RoPE (`qk_norm=True`); Llama 3.1+ rescales
the RoPE frequencies (`rope_scaling=RopeScaling(...)`, HF rope_type 'llama3').

Parameters are float32 unless `config.param_dtype='bfloat16'`; `config.dtype` sets the compute
dtype of activations and matmuls.
Logits are returned in float32 (the LM head accumulates in float32) because the GRPO ratio is a
difference of log-probs and bfloat16 logits would put ~1e-2 noise into it.

Padding convention: rows are left-padded; `attention_mask` is True on real tokens and `positions`
count real tokens only (0 at a row's first real token, see `positions_from_mask`). Padded keys are
masked out, so a prompt's logits do not depend on the padding around it.

KV cache: a `KVCache` holds per-layer key/value buffers of a fixed length S and a [B, S] mask of the
slots that hold real tokens. A call with `cache_index=i` writes its T tokens to slots [i, i+T) and
attends causally (by slot) over the valid slots, so prefill and one-token decode are the same code.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

# Finite instead of -inf so a fully masked query row (a padding position) gives a uniform, finite
# softmax rather than NaNs that would poison gradients through jnp.where.
_MASK_VALUE = -1e30
_INIT_STD = 0.02  # HF `initializer_range` default for Llama and Qwen2.

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]

  @property
  def storage_dtype(self):
    return _DTYPES[self.param_dtype]


class KVCache(NamedTuple):
  """Key/value buffers for incremental decoding.

  k, v: tuples (one entry per layer) of [B, n_kv_heads, S, head_dim] arrays in the compute dtype
    (heads before slots: the layout the attention einsums consume, so XLA does not transpose
    the whole cache on every decode step).
  mask: [B, S] bool, True where a slot holds a real (non-padding) token that has been written.
  """
  k: tuple
  v: tuple
  mask: jax.Array


def init_cache(config: ModelConfig, batch: int, length: int) -> KVCache:
  """An empty cache of `length` slots for `batch` rows (all slots invalid)."""
  shape = (batch, config.n_kv_heads, length, config.head_dim)
  zeros = lambda: jnp.zeros(shape, config.compute_dtype)
  return KVCache(k=tuple(zeros() for _ in range(config.n_layers)),
                 v=tuple(zeros() for _ in range(config.n_layers)),
                 mask=jnp.zeros((batch, length), bool))


def repeat_cache(cache: KVCache, repeats: int) -> KVCache:
  """Each row of `cache` repeated `repeats` times in place ([B, ...] -> [B * repeats, ...]).

  A prompt prefilled once serves its whole group of rollouts this way.
  """
  rep = lambda x: jnp.repeat(x, repeats, axis=0)
  return KVCache(tuple(map(rep, cache.k)), tuple(map(rep, cache.v)), rep(cache.mask))


def grow_cache(cache: KVCache, length: int) -> KVCache:
  """`cache` with empty slots appended up to `length` (a copy; written slots keep their place).

  Decoding in buckets attends over a cache as long as the filled part rounded up, and grows it
  between buckets, instead of attending over the longest cache from the first token on.
  """
  extra = length - cache.mask.shape[1]
  if extra < 0:
    raise ValueError(f"cannot grow a cache of {cache.mask.shape[1]} slots to {length}")
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, extra), (0, 0)))
  return KVCache(tuple(map(pad, cache.k)), tuple(map(pad, cache.v)),
                 jnp.pad(cache.mask, ((0, 0), (0, extra))))


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
  """[B, T] bool -> [B, T] int32 positions: 0 at each row's first real token, counting real tokens.

  Padding positions get the position of the next real token minus one, clipped at 0; their value
  is irrelevant because padded keys are masked.
  """
  return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def _normal(rngs: nnx.Rngs, shape, dtype=jnp.float32) -> nnx.Param:
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
  """x @ kernel (+ bias); kernel is [in, out], cast to the input's dtype for the matmul."""

  def __init__(self, d_in: int, d_out: int, *, bias: bool, rngs: nnx.Rngs,
               param_dtype=jnp.float32):
    self.kernel = _normal(rngs, (d_in, d_out), param_dtype)
    self.bias = nnx.Param(jnp.zeros((d_out,), param_dtype)) if bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = _dot_2d(x, self.kernel[...].astype(x.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(x.dtype)
    return y


def _dot_2d(x: jax.Array, kernel: jax.Array, **kwargs) -> jax.Array:
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


def attend(q: jax.Array, k: jax.Array, v: jax.Array, valid: jax.Array) -> jax.Array:
  """Grouped-query scaled dot-product attention.

  q: [B, T, H, D]; k, v: [B, Hkv, S, D] with H a multiple of Hkv (query head h reads kv head
  h // (H / Hkv)); valid: [B, T, S] bool. Returns [B, T, H, D]. Scores and softmax in float32.
  """
  b, t, h, d = q.shape
  hkv = k.shape[1]
  qg = q.reshape(b, t, hkv, h // hkv, d)
  scores = jnp.einsum("btkgd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32)
  scores = scores / jnp.sqrt(jnp.float32(d))
  scores = jnp.where(valid[:, None, None, :, :], scores, _MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  # The product keeps the (b, k) batch and (g, t) rows of the scores, so XLA's CPU backend runs
  # it as one batched matmul; asking the einsum for [B, T, ...] directly made it compute the
  # transposed product, 4x slower on a decode step (docs/PERFORMANCE.md). Same sums either way.
  out = jnp.einsum("bkgts,bksd->bkgtd", probs, v)
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


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

  def __call__(self, x, positions, valid, layer_cache=None, cache_index=None):
    """x: [B, T, D]; valid: [B, T, S] bool. layer_cache: optional (k, v) of [B, Hkv, S, Dh].

    Returns (out [B, T, D], new (k, v) or None).
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
    new_cache = None
    if layer_cache is not None:
      k_buf, v_buf = layer_cache
      start = (0, 0, cache_index, 0)
      k = jax.lax.dynamic_update_slice(k_buf, k.astype(k_buf.dtype), start)
      v = jax.lax.dynamic_update_slice(v_buf, v.astype(v_buf.dtype), start)
      new_cache = (k, v)
    out = attend(q, k, v, valid)
    return self.o_proj(out.reshape(b, t, cfg.n_heads * cfg.head_dim)), new_cache


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

  def __call__(self, x, positions, valid, layer_cache=None, cache_index=None):
    h, new_cache = self.attn(self.attn_norm(x), positions, valid, layer_cache, cache_index)
    x = x + h
    x = x + self.mlp(self.mlp_norm(x))
    return x, new_cache


def _valid_keys(attention_mask, cache, cache_index):
  """[B, T, S] bool: which keys each query may attend to (causal by slot, real tokens only).

  Returns (valid, key_mask) where key_mask [B, S] is the cache mask after writing this call's
  tokens (or attention_mask itself without a cache).
  """
  t = attention_mask.shape[1]
  if cache is None:
    key_mask, offset = attention_mask, 0
  else:
    key_mask = jax.lax.dynamic_update_slice(cache.mask, attention_mask, (0, cache_index))
    offset = cache_index
  query_slot = offset + jnp.arange(t)
  key_slot = jnp.arange(key_mask.shape[1])
  causal = key_slot[None, :] <= query_slot[:, None]  # [T, S]
  return key_mask[:, None, :] & causal[None], key_mask


class Transformer(nnx.Module):
  """Decoder-only LM. Call: (tokens, positions, attention_mask, cache, cache_index) -> (logits, cache)."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    pd = cfg.storage_dtype
    self.embed = _normal(rngs, (cfg.vocab_size, cfg.d_model), pd)
    self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
    self.final_norm = RMSNorm(cfg.d_model, cfg.rms_eps, pd)
    self.lm_head = None if cfg.tie_embeddings else _normal(rngs, (cfg.d_model, cfg.vocab_size), pd)

  def __call__(self, tokens: jax.Array, positions: jax.Array, attention_mask: jax.Array,
               cache: KVCache | None = None, cache_index=None):
    """Run the model.

    tokens, positions: [B, T] int32; attention_mask: [B, T] bool (True = real token).
    cache: optional KVCache with S slots; cache_index: scalar int, the slot of tokens[:, 0].
    Returns (logits [B, T, V] float32, the updated KVCache or None when no cache was given).
    """
    if (cache is None) != (cache_index is None):
      raise ValueError("cache and cache_index must be given together")
    dtype = self.cfg.compute_dtype
    attention_mask = attention_mask.astype(bool)
    valid, key_mask = _valid_keys(attention_mask, cache, cache_index)
    x = jnp.take(self.embed[...], tokens, axis=0).astype(dtype)
    new_k, new_v = [], []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else (cache.k[i], cache.v[i])
      x, layer_new = layer(x, positions, valid, layer_cache, cache_index)
      if layer_new is not None:
        new_k.append(layer_new[0])
        new_v.append(layer_new[1])
    x = self.final_norm(x)
    head = self.embed[...].T if self.lm_head is None else self.lm_head[...]
    logits = _dot_2d(x, head.astype(dtype), preferred_element_type=jnp.float32)
    new_cache = None if cache is None else KVCache(tuple(new_k), tuple(new_v), key_mask)
    return logits, new_cache


def init_model(config: ModelConfig, rng: jax.Array | int) -> tuple[nnx.GraphDef, nnx.State]:
  """Randomly initialise a Transformer and split it into (graphdef, params state)."""
  rngs = nnx.Rngs(params=rng)
  return nnx.split(Transformer(config, rngs))


def abstract_model(config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, state of ShapeDtypeStructs) without allocating parameters."""
  return nnx.split(nnx.eval_shape(lambda: Transformer(config, nnx.Rngs(params=0))))


def forward(graphdef: nnx.GraphDef, state: nnx.State, tokens, positions, attention_mask,
            cache: KVCache | None = None, cache_index=None):
  """Pure functional call: same as `Transformer.__call__`, usable under jax.jit/grad on `state`.

  Jit with the graphdef static, e.g. `jax.jit(forward, static_argnums=0)`.
  """
  model = nnx.merge(graphdef, state)
  return model(tokens, positions, attention_mask, cache, cache_index)


def token_logprobs(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array,
                   attention_mask: jax.Array, positions: jax.Array | None = None, *,
                   temperature: float = 1.0) -> jax.Array:
  """Log-probs of tokens[:, 1:] given their prefixes: [B, T] -> [B, T-1] float32.

  Computed as log_softmax(logits / temperature). temperature=1 gives the model's own
  distribution; pass the sampling temperature to match `SampleOutput.logprobs`.
  positions default to `positions_from_mask(attention_mask)`. Entries whose target token is
  padding are meaningless; mask them with attention_mask[:, 1:].
  """
  if positions is None:
    positions = positions_from_mask(attention_mask)
  logits, _ = forward(graphdef, state, tokens, positions, attention_mask)
  logp = jax.nn.log_softmax(logits[:, :-1] / temperature, axis=-1)
  return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]



def grouped_response_logprobs(graphdef: nnx.GraphDef, state: nnx.State, prompt_tokens: jax.Array,
                              prompt_mask: jax.Array, response_tokens: jax.Array,
                              response_mask: jax.Array, group_size: int) -> jax.Array:
  """Log-probs (temperature 1) of G responses per prompt, running each prompt once: [N, L].

  prompt_tokens, prompt_mask: [B, P], left-padded. response_tokens, response_mask: [N, L] with
  N = B * group_size, prompt-major (rows b*G .. b*G + G - 1 answer prompt b).
  Equals `token_logprobs` on the concatenated [N, P + L] sequences (the prompt's keys and values
  do not depend on what follows it), but the prompt goes through the model B times instead of N:
  the prompt pass writes a KV cache that is repeated G times, and the responses attend over it.
  Differentiable in `state` (through the repeated cache too). Entries whose token is padding are
  meaningless; mask them with response_mask.
  """
  model = nnx.merge(graphdef, state)
  b, p = prompt_tokens.shape
  n, length = response_tokens.shape
  if n != b * group_size:
    raise ValueError(f"{n} responses for {b} prompts x group_size {group_size}")
  prompt_mask = prompt_mask.astype(bool)
  response_mask = response_mask.astype(bool)
  cache = init_cache(model.cfg, b, p + length - 1)
  prompt_logits, cache = model(prompt_tokens, positions_from_mask(prompt_mask), prompt_mask,
                               cache, jnp.int32(0))
  cache = repeat_cache(cache, group_size)
  # Response token j is predicted at the slot before it: the prompt's last slot for j = 0, else
  # response slot j - 1; the last response token predicts nothing and is not fed.
  logits = jnp.repeat(prompt_logits[:, -1:], group_size, axis=0)
  if length > 1:
    prompt_len = jnp.repeat(jnp.sum(prompt_mask, -1, dtype=jnp.int32), group_size)
    positions = prompt_len[:, None] + jnp.arange(length - 1, dtype=jnp.int32)
    rest, _ = model(response_tokens[:, :-1], positions, response_mask[:, :-1], cache,
                    jnp.int32(p))
    logits = jnp.concatenate([logits, rest], axis=1)
  logp = jax.nn.log_softmax(logits, axis=-1)
  # A masked sum rather than a gather: its gradient is elementwise and fuses with the softmax's,
  # where a gather's is a scatter into a zeroed [N, L, V] buffer.
  chosen = jnp.arange(logp.shape[-1]) == response_tokens[..., None]
  return jnp.sum(jnp.where(chosen, logp, 0.0), axis=-1)
