"""How a decode is planned: its cache buckets, its stop ids, the random numbers it draws its
tokens from, and the layout this platform decodes fastest in (per-layer copies, a shared prefix).

`focal.sampling.sample` follows this plan; the trainer and evaluation draw the same uniforms to
sample a batch in chunks, and the step metrics read the stop ids.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from focal.models.attention import target_platform


FIRST_BUCKET = 64  # new tokens the first decode bucket's cache holds; each next one doubles


def decode_buckets(max_new_tokens: int, first: int = FIRST_BUCKET) -> list[int]:
  """Cache sizes (in generated tokens) of the decode buckets: first, 2 first, ... up to the cap.

  The decode steps of bucket j attend over the prompt + the first buckets[j] generated slots, so a
  step's attention costs at most about twice the filled part (instead of the whole cap from the
  first token on), for log2(cap / first) extra compiled loops.
  """
  sizes = [min(first, max_new_tokens)]
  while sizes[-1] < max_new_tokens:
    sizes.append(min(2 * sizes[-1], max_new_tokens))
  return sizes


def stop_array(eos_id) -> jax.Array:
  """[S] int32 stop ids of `eos_id` (an id, a sequence of ids, or None: [-1], never met)."""
  if eos_id is None:
    return jnp.asarray([-1], jnp.int32)
  ids = list(eos_id) if isinstance(eos_id, (list, tuple)) else [eos_id]
  return jnp.asarray(ids, jnp.int32)


def draw_uniforms(rng, max_new_tokens: int, n: int) -> jax.Array:
  """[max_new_tokens, n] uniforms: the random numbers `sample` draws its n rows' tokens from."""
  return jax.random.uniform(rng, (max_new_tokens, n), jnp.float32)


def per_layer_decode() -> bool:
  """Whether decode steps run the layers over per-layer copies of the weights and caches.

  On CPU, XLA copies the slice of a stacked array that a matmul reads, so a scanned decode step
  would copy every layer's weights and cache slice; a per-layer copy of the weights made once per
  `sample` call, and per-layer caches, avoid that. On TPU the scan reads the slices in place and
  the weights are not duplicated.
  """
  return target_platform() == "cpu"


def shared_prefix_decode() -> bool:
  """Whether decode steps attend over each prompt's prefix cache shared by its G rows.

  Shared, the prefix is a second key segment that every step merges with the generated tokens'
  (focal.models.attention): one copy per prompt, what a large model's rollouts need on TPU. On
  CPU the models are small and a step is ~100 small XLA ops, each a hand-off to the thread pool:
  there each row's first decode chunk starts with a copy of its prompt's cache, made once per
  `sample` call, so the steps of the first bucket attend over one segment (2 x 11 fewer ops per
  step at the peers' 0.11M shape, docs/PERFORMANCE.md section 6).
  """
  return target_platform() != "cpu"
