"""The simulated judge: Bernoulli verdicts from the response type, noise flips, invalid answers.

For rollout i of prompt p with type m and criterion k:
  valid   ~ Bernoulli(1 - invalid)
  verdict ~ Bernoulli(q), q = (1 - noise) r + noise (1 - r),  r = P(criteria_met | m)
which is a noise-free verdict flipped with probability `noise`. Both come from
one 16-bit uniform v per verdict: invalid when v < invalid, else met when
invalid <= v < invalid + q (1 - invalid). `verdict_bounds` turns the table into
those two integer bounds once per run, so a step only gathers and compares.

Random numbers. A step needs P G K uniforms (8.4M for 128 seeds at the
benchmark shape), which JAX's threefry makes at about 40M 32-bit words/s on
this CPU: most of a step. They come instead from a counter-based hash
(Wellons' `triple32`, applied twice, keyed by two 32-bit words that threefry
draws for the step), split into two 16-bit halves: about 20x cheaper,
still a pure function of the key, and identical under vmap. Probabilities are
resolved to 2^-16.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RESOLUTION = 65536  # 16-bit uniforms


class VerdictBounds(NamedTuple):
  """Integer bounds on a 16-bit uniform x: invalid if x < lo, met if lo <= x < hi."""
  lo: jax.Array  # [] uint32
  hi: jax.Array  # [P, M, K] uint32


def verdict_bounds(raw_pass_prob, noise, invalid) -> VerdictBounds:
  """Bounds for `raw_pass_prob [P, M, K]` = P(criteria_met = 1 | type), noise and invalid rates."""
  q = raw_pass_prob * (1.0 - 2.0 * noise) + noise
  lo = jnp.round(invalid * RESOLUTION)
  hi = lo + jnp.round(q * (1.0 - invalid) * RESOLUTION)
  return VerdictBounds(lo.astype(jnp.uint32), jnp.minimum(hi, RESOLUTION).astype(jnp.uint32))


def triple32(x):
  """Chris Wellons' triple32 integer hash (a bijection of uint32, low bias)."""
  x = x ^ (x >> 17)
  x = x * jnp.uint32(0xED5AD4BB)
  x = x ^ (x >> 11)
  x = x * jnp.uint32(0xAC4C1B51)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x31848BAB)
  return x ^ (x >> 14)


def uniform16_bits(words, shape):
  """uint32 values in [0, 2^16) of `shape`, hashed from a counter keyed by `words` [2] uint32."""
  *lead, k = shape
  k1, k2 = words[0], words[1]
  half = (k + 1) // 2
  n = 1
  for d in lead:
    n *= d
  counter = jax.lax.iota(jnp.uint32, n * half).reshape(*lead, half)
  words = triple32(triple32(counter + k1) ^ k2)
  return jnp.concatenate([words & 0xFFFF, words >> 16], -1)[..., :k]


def judge(words, bounds: VerdictBounds, types):
  """Verdicts of G rollouts per prompt.

  Args:
    words: [2] uint32 key words of this step's verdicts.
    bounds: from `verdict_bounds`, hi [P, M, K].
    types: [P, G] int32 sampled types.

  Returns:
    scores [P, G, K] float32 in {0, 1}, valid [P, G, K] bool.
  """
  hi = jnp.take_along_axis(bounds.hi, types[:, :, None], axis=1)
  x = uniform16_bits(words, hi.shape)
  valid = x >= bounds.lo
  return (valid & (x < hi)).astype(jnp.float32), valid
