"""Rubric populations: named distributions of P prompts' criteria (weights, categories, flags).

`make_population(name).draw(u_prompt [P], u_slots [3, P, K])` turns uniforms in
[0, 1) into `Criteria` of [P, K] arrays (jittable; K slots, real ones marked by
`mask`). Populations take uniforms rather than a key so that a whole world is
drawn by one random-number call (each threefry call site costs seconds of XLA
compile time on this CPU). Slot 0 of every prompt is a
real criterion with positive weight, so each rubric is valid in both pitfall
modes. Populations:

  equal:       K criteria of weight 1 in 4 round-robin categories (equal sizes
               when 4 divides K); the symmetric control.
  synthetic:   K/2..K criteria, weights 1..5, 10% pitfalls (-1..-3), 4 categories.
  healthbench: HealthBench's published shape: about 10 criteria per example
               (48,562 criteria / 5,000 examples = 9.7: n = 2 + Poisson(7.7),
               capped at K), integer points in [-10, 10], five axes. The axis
               shares, the pitfall share (25%) and the magnitude profile
               (P(|w| = v) proportional to 11 - v) are this module's assumptions,
               not published statistics.
  rar:         RaR's shape: 7-20 criteria (capped at K), labels Essential (5),
               Important (3-4), Optional (1-2), Pitfall (-1 or -2); the label is
               the category (ids as in focal.data.rar) and Essential is required.
               Label shares 30/30/20/20% are assumptions.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np
from scipy import stats

from focal.registry import Registry

# Category ids of focal.data.healthbench.AXES and focal.data.rar.CATEGORY_NAMES, repeated
# here because importing those modules pulls in tensorflow_datasets (tests check equality).
HEALTHBENCH_AXES = ("accuracy", "completeness", "communication_quality", "context_awareness",
                    "instruction_following")
RAR_LABELS = ("Essential", "Important", "Optional", "Pitfall")


class Criteria(NamedTuple):
  """[P, K] criteria of P prompts (the fields of `focal.rubric.RubricBatch` but prompt ids)."""
  weights: Any     # float32, signed (negative = pitfall), 0 on padding
  categories: Any  # int32 in [0, C), 0 on padding
  required: Any    # bool, criteria a strict completion must pass
  mask: Any        # bool, real criteria


@dataclasses.dataclass(frozen=True)
class Population:
  """A named criteria distribution: `draw(u_prompt [P], u_slots [3, P, K]) -> Criteria`."""
  name: str
  category_names: tuple[str, ...]
  max_abs_weight: float  # the largest |weight| it draws (heavy_easy assigns it)
  category_shares: tuple[float, ...]  # share of criteria per category (world.assign_classes)
  draw: Callable[[Any, Any], Criteria]

  @property
  def num_categories(self) -> int:
    return len(self.category_names)


_POPULATIONS = Registry("rubric population")
registered = _POPULATIONS.names


def make_population(name: str) -> Population:
  """The population registered as `name` (ValueError listing the names otherwise)."""
  return _POPULATIONS.make(name)


def inverse_cdf(u, probs):
  """Draws from the discrete distribution `probs` (static, sums to 1): index of u's bin."""
  edges = jnp.asarray(np.cumsum(probs)[:-1], jnp.float32)
  return jnp.sum(u[..., None] >= edges, -1).astype(jnp.int32)


def _uniform_int(u, lo: int, hi: int):
  """Integers uniform on [lo, hi] from uniforms in [0, 1)."""
  return jnp.minimum(lo + jnp.floor(u * (hi - lo + 1)), hi).astype(jnp.int32)


def _finish(weights, categories, required, counts) -> Criteria:
  """Masks slots at or past each prompt's count (clipped to [1, K])."""
  k = weights.shape[-1]
  mask = jnp.arange(k)[None, :] < jnp.clip(counts, 1, k)[:, None]
  return Criteria(weights=jnp.where(mask, weights, 0.0).astype(jnp.float32),
                  categories=jnp.where(mask, categories, 0).astype(jnp.int32),
                  required=required & mask, mask=mask)


def _not_first(shape):
  """[P, K] bool, False on slot 0 (kept a positive criterion)."""
  return jnp.broadcast_to(jnp.arange(shape[-1]) > 0, shape)


@_POPULATIONS.register("equal")
def _equal() -> Population:
  def draw(u_prompt, u_slots):
    shape = u_slots.shape[1:]
    categories = jnp.broadcast_to(jnp.arange(shape[1]) % 4, shape)
    return _finish(jnp.ones(shape), categories, jnp.zeros(shape, bool),
                   jnp.full(u_prompt.shape, shape[1]))
  return Population("equal", ("c0", "c1", "c2", "c3"), 1.0, (0.25,) * 4, draw)


@_POPULATIONS.register("synthetic")
def _synthetic() -> Population:
  def draw(u_prompt, u_slots):
    shape = u_slots.shape[1:]
    k = shape[1]
    magnitude = _uniform_int(u_slots[0], 1, 5).astype(jnp.float32)
    pitfall = (u_slots[1] < 0.1) & _not_first(shape)
    weights = jnp.where(pitfall, -jnp.minimum(magnitude, 3.0), magnitude)
    return _finish(weights, _uniform_int(u_slots[2], 0, 3), jnp.zeros(shape, bool),
                   _uniform_int(u_prompt, (k + 1) // 2, k))
  return Population("synthetic", ("c0", "c1", "c2", "c3"), 5.0, (0.25,) * 4, draw)


# HealthBench axis shares in the order of HEALTHBENCH_AXES (assumed, see above).
HEALTHBENCH_AXIS_SHARES = (0.33, 0.39, 0.08, 0.16, 0.04)
HEALTHBENCH_PITFALL_SHARE = 0.25
_HB_MAGNITUDE = np.arange(10, 0, -1) / np.sum(np.arange(10, 0, -1))   # P(|w| = 1..10)
_HB_EXTRA = stats.poisson(7.7).pmf(np.arange(64))                      # criteria beyond 2


@_POPULATIONS.register("healthbench")
def _healthbench() -> Population:
  def draw(u_prompt, u_slots):
    shape = u_slots.shape[1:]
    magnitude = 1.0 + inverse_cdf(u_slots[0], _HB_MAGNITUDE).astype(jnp.float32)
    pitfall = (u_slots[1] < HEALTHBENCH_PITFALL_SHARE) & _not_first(shape)
    categories = inverse_cdf(u_slots[2], HEALTHBENCH_AXIS_SHARES)
    counts = 2 + inverse_cdf(u_prompt, _HB_EXTRA / np.sum(_HB_EXTRA))
    return _finish(jnp.where(pitfall, -magnitude, magnitude), categories,
                   jnp.zeros(shape, bool), counts)
  return Population("healthbench", HEALTHBENCH_AXES, 10.0, HEALTHBENCH_AXIS_SHARES, draw)


# Shares of the labels Essential, Important, Optional, Pitfall (ids 0-3; assumed).
RAR_LABEL_SHARES = (0.3, 0.3, 0.2, 0.2)


@_POPULATIONS.register("rar")
def _rar() -> Population:
  def draw(u_prompt, u_slots):
    shape = u_slots.shape[1:]
    label = jnp.where(_not_first(shape), inverse_cdf(u_slots[0], RAR_LABEL_SHARES), 0)
    low = (u_slots[1] < 0.5).astype(jnp.float32)   # the lower weight of the label's two
    weights = jnp.select([label == 0, label == 1, label == 2],
                         [jnp.full(shape, 5.0), 4.0 - low, 2.0 - low], -(2.0 - low))
    return _finish(weights, label, label == 0, _uniform_int(u_prompt, 7, 20))
  # Slot 0 is always Essential, which the label shares (for slots 1+) leave out.
  return Population("rar", RAR_LABELS, 5.0, RAR_LABEL_SHARES, draw)
