"""The aggregator interface, its registry, and the reward algebra they share.

Like an optax transformation, an aggregator is a pair of pure functions:

  state = agg.init(num_prompts, max_criteria)
  rewards [B, G], state, metrics = agg.update(scores [B, G, K], valid [B, G, K], rubric, state)

`update` is jit- and vmap-compatible (hyper-parameters are closed over as
Python constants; nothing loops over B, G or K in Python).

Invalid verdicts (`valid=False`) are left out of that rollout's reward, in the
numerator and the denominator. A rollout with no usable verdict gets the mean
reward of the rollouts of its group that have one, so its GRPO advantage is 0.
`register` wraps every update so that scores without a usable verdict (invalid
or padding) are 0 before any arithmetic: a NaN or inf there would otherwise
survive its mask (0 x NaN = NaN) and reach the rewards.

Every aggregator's metrics hold at least:
  weights [B, K]: the per-criterion coefficients it applied (all verdicts
    valid), normalised so their absolute values sum to 1 per prompt.
  invalid_verdict_frac []: share of real (rollout, criterion) verdicts missing.
  rollouts_without_valid []: rollouts that fell back to their group mean.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from focal.registry import Registry
from focal.rubric import RubricBatch, safe_div


class Aggregator(NamedTuple):
  """`init(num_prompts, max_criteria) -> state` and
  `update(scores, valid, rubric, state) -> (rewards [B, G], state, metrics)`."""
  init: Callable[[int, int], Any]
  update: Callable[..., tuple[Any, Any, dict]]


class EmptyState(NamedTuple):
  """State of a stateless aggregator (an empty pytree)."""


def init_empty(num_prompts: int, max_criteria: int) -> EmptyState:
  del num_prompts, max_criteria
  return EmptyState()


_AGGREGATORS = Registry("aggregator")
registered = _AGGREGATORS.names   # registered(static=True): the static baselines
defaults = _AGGREGATORS.defaults


def register(name: str, **tags):
  """Decorator registering an aggregator factory under `name` (tags as in `Registry`).

  The registered factory builds aggregators whose `update` sees `usable_scores`:
  no update can mix a masked-out NaN into a reward.
  """
  def wrap(factory):
    @functools.wraps(factory)  # keeps the signature the config block is read from
    def guarded(*args, **kwargs) -> Aggregator:
      agg = factory(*args, **kwargs)
      return Aggregator(agg.init, _on_usable_scores(agg.update))
    return _AGGREGATORS.register(name, **tags)(guarded)
  return wrap


def _on_usable_scores(update):
  @functools.wraps(update)
  def guarded_update(scores, valid, rubric: RubricBatch, state):
    return update(usable_scores(scores, valid, rubric), valid, rubric, state)
  return guarded_update


def make(name: str, **hparams) -> Aggregator:
  """Builds the aggregator registered as `name` with the given hyper-parameters."""
  return _AGGREGATORS.make(name, **hparams)


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> float:
  """Raises ValueError unless lo <= value <= hi (lo < value with lo_open).

  A traced value (or bound) passes unchecked: the simulator vmaps hyper-parameters
  and checks each lane's concrete value before tracing.
  """
  if any(isinstance(v, jax.core.Tracer) for v in (value, lo, hi)):
    return value
  value = float(value)
  bad = ((lo is not None and (value <= lo if lo_open else value < lo))
         or (hi is not None and value > hi) or value != value)
  if bad:
    bounds = f"{'(' if lo_open else '['}{lo}, {hi}]"
    raise ValueError(f"{name}={value} is outside {bounds}")
  return value


# ----------------------------------------------------------------------------
# Shared reward algebra.
# ----------------------------------------------------------------------------


def present(valid, rubric: RubricBatch):
  """[B, G, K] bool: a real criterion with a verdict."""
  return valid & rubric.mask[:, None, :]


def usable_scores(scores, valid, rubric: RubricBatch):
  """scores [B, G, K] with 0 wherever no real criterion has a verdict (invalid or padding)."""
  return jnp.where(present(valid, rubric), scores, jnp.zeros((), scores.dtype))


def fill_from_group(raw, has_valid):
  """rewards [B, G]: `raw` where `has_valid`, else the group's mean over valid rollouts."""
  has_valid_f = has_valid.astype(raw.dtype)
  group_mean = safe_div(jnp.sum(raw * has_valid_f, -1, keepdims=True),
                        jnp.sum(has_valid_f, -1, keepdims=True))
  return jnp.where(has_valid, raw, group_mean)


def category_coefficients(weights, present_mask, same, signed: bool = False):
  """Coefficients of the category-balanced reward (POW3R Eq. 3 / Eq. 8).

  R = (1/K_q) sum_{k nonempty} (1/W_k) sum_{j in C_k} w_j s_j
    = sum_j c_j s_j  with  c_j = w_j / (W_{kappa_j} K_q),
  where only `present` criteria enter W_k, K_q and the sum.

  Args:
    weights: [B, K] or [B, G, K] criterion weights (non-negative unless `signed`).
    present_mask: [B, G, K] bool, criteria that count for each rollout.
    same: [B, K, K] same-category matrix (see `focal.rubric.same_category`).
    signed: pitfalls keep negative weights; W_k is then the category's positive
      mass (HealthBench's denominator), or its absolute mass if it has none.

  Returns:
    (c [B, G, K], nonempty [B, G]) where `nonempty` marks rollouts with at
    least one category of non-zero mass.
  """
  pres = present_mask.astype(jnp.float32)
  w = jnp.broadcast_to(weights if weights.ndim == 3 else weights[:, None, :], pres.shape)
  pw = w * pres
  g = pres.shape[1]
  # One batched matmul for every category sum this needs: stacking along the
  # rollout axis halves the dispatches. Its B*G*K^2 cost is the only
  # super-linear term of the category-balanced family (benchmarks/aggregators.py).
  parts = [pw, pres] + ([jnp.maximum(pw, 0.0), jnp.abs(pw)] if signed else [])
  sums = jnp.einsum("bjl,bgl->bgj", same, jnp.concatenate(parts, axis=1))
  cat_mass, cat_count = sums[:, :g], sums[:, g:2 * g]
  if signed:
    w_pos, w_abs = sums[:, 2 * g:3 * g], sums[:, 3 * g:]
    cat_mass = jnp.where(w_pos > 0, w_pos, w_abs)
  counts_category = pres * (cat_mass != 0)
  num_categories = jnp.sum(safe_div(counts_category, cat_count), -1, keepdims=True)
  coef = safe_div(pw, cat_mass) * counts_category
  return safe_div(coef, num_categories), num_categories[..., 0] > 0.5


def normalized_weights(coef):
  """[B, K]: coefficients scaled so that their absolute values sum to 1 per prompt."""
  return safe_div(coef, jnp.sum(jnp.abs(coef), -1, keepdims=True))


def verdict_metrics(valid, rubric: RubricBatch, has_valid) -> dict:
  """The invalid-verdict counters every aggregator reports."""
  real = jnp.broadcast_to(rubric.mask[:, None, :], valid.shape)
  n_real = jnp.sum(real)
  n_present = jnp.sum(valid & real)
  return {
      "invalid_verdict_frac": 1.0 - safe_div(n_present.astype(jnp.float32),
                                             n_real.astype(jnp.float32)),
      "rollouts_without_valid": jnp.sum(~has_valid).astype(jnp.float32),
  }
