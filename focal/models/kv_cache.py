"""KV caches of incremental decoding, and positions of left-padded rows.

A `KVCache` holds the keys and values of every layer in one array per kind, [n_layers, B, Hkv,
S, Dh] (the layer axis first, as the layers' parameters: the scanned layer stack reads layer i's
slice), and a [B, S] mask of the slots that hold real tokens; or, for decoding on CPU (see
focal.sampling), tuples of per-layer [B, Hkv, S, Dh] buffers. Two roles:
  * a cache that a call extends: `forward(..., cache, cache_index)` writes the call's tokens at
    [cache_index, cache_index + T) and attends over the real slots up to each token's own, so
    prefill and one-token decode are the same code;
  * a prompt's prefix, shared by its G rollouts: the rows of the queries' batch that continue
    prompt b are rows b*G .. b*G + G - 1 (prompt-major), and they all see its whole prefix.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from focal.models.config import ModelConfig


class KVCache(NamedTuple):
  """k, v: [n_layers, B, n_kv_heads, S, head_dim] in the compute dtype; mask: [B, S] bool, True
  where a slot holds a real (non-padding) token that has been written."""
  k: jax.Array
  v: jax.Array
  mask: jax.Array


def init_cache(config: ModelConfig, batch: int, length: int, *, per_layer: bool = False) -> KVCache:
  """An empty cache of `length` slots for `batch` rows (all slots invalid); per_layer: k and v
  as tuples of n_layers separate [B, Hkv, S, Dh] buffers instead of one stacked array each."""
  shape = (batch, config.n_kv_heads, length, config.head_dim)
  zeros = lambda: jnp.zeros((config.n_layers, *shape), config.compute_dtype)
  if per_layer:
    zeros = lambda: tuple(jnp.zeros(shape, config.compute_dtype) for _ in range(config.n_layers))
  return KVCache(k=zeros(), v=zeros(), mask=jnp.zeros((batch, length), bool))


def unstack(cache: KVCache) -> KVCache:
  """A stacked cache as per-layer tuples (copies)."""
  return KVCache(tuple(cache.k), tuple(cache.v), cache.mask)


def repeat_rows(cache: KVCache, repeats: int, slots: int) -> KVCache:
  """Each row of `cache` repeated `repeats` times (prompt-major) and followed by `slots` empty
  slots: a prompt's prefix as the front of its G rows' own cache (stacked or per-layer)."""
  grow = lambda x: jnp.pad(jnp.repeat(x, repeats, axis=-4), [(0, 0)] * (x.ndim - 2)
                           + [(0, slots), (0, 0)])
  kv = lambda xs: tuple(map(grow, xs)) if isinstance(xs, tuple) else grow(xs)
  mask = jnp.pad(jnp.repeat(cache.mask, repeats, axis=0), ((0, 0), (0, slots)))
  return KVCache(kv(cache.k), kv(cache.v), mask)


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
  """[B, T] bool -> [B, T] int32 positions: 0 at each row's first real token, counting real tokens.

  Padding positions get the position of the next real token minus one, clipped at 0; their value
  is irrelevant because padded keys are masked.
  """
  return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)
