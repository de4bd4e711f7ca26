"""The KV cache of incremental decoding, and positions of left-padded rows.

A `KVCache` holds per-layer key/value buffers of a fixed length S and a [B, S] mask of the
slots that hold real tokens. A call with `cache_index=i` writes its T tokens to slots [i, i+T)
and attends causally (by slot) over the valid slots, so prefill and one-token decode are the
same code."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from focal.models.config import ModelConfig


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


def valid_keys(attention_mask, cache, cache_index):
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
