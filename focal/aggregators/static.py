"""Static aggregators (METHODS §2): the baselines every adaptive method is measured against.

All take `pitfall_mode`: `flip` (default; POW3R App. A.4: a pitfall's verdict
becomes 1 - s and its weight |w|) or `signed` (HealthBench: the pitfall
subtracts its weight when hit; the denominator is the positive mass).
"""
from __future__ import annotations

import jax.numpy as jnp

from focal.aggregators import base
from focal.rubric import (RubricBatch, apply_pitfalls, check_pitfall_mode, passes, safe_div,
                          same_category, strict_targets)


def _linear_rewards(weights, scores, valid, rubric, signed):
  """R_i = sum_{j present} w_j s_ij / D_i with D_i the present positive mass.

  Returns (raw [B, G], has_valid [B, G]).
  """
  pres = base.present(valid, rubric).astype(jnp.float32)
  w = weights[:, None, :] * pres
  num = jnp.sum(w * scores, -1)
  den = jnp.sum(jnp.maximum(w, 0.0), -1)
  if signed:
    # A rollout whose only verdicts are pitfalls has no positive mass: its
    # pitfalls are normalised by their own absolute mass instead of dropped.
    den = jnp.where(den > 0, den, jnp.sum(jnp.abs(w), -1))
  return safe_div(num, den), den > 0


def _weights_metric(weights, signed):
  coef = weights if signed else jnp.abs(weights)
  return base.normalized_weights(coef)


def _linear(weight_fn):
  def factory(pitfall_mode: str = "flip") -> base.Aggregator:
    check_pitfall_mode(pitfall_mode)
    signed = pitfall_mode == "signed"

    def update(scores, valid, rubric: RubricBatch, state):
      w, s = apply_pitfalls(scores, rubric, pitfall_mode)
      w = weight_fn(w) * rubric.mask
      raw, has_valid = _linear_rewards(w, s, valid, rubric, signed)
      metrics = {"weights": _weights_metric(w, signed),
                 **base.verdict_metrics(valid, rubric, has_valid)}
      return base.fill_from_group(raw, has_valid), state, metrics

    return base.Aggregator(base.init_empty, update)
  return factory


weighted_sum = base.register("weighted_sum", static=True)(_linear(lambda w: w))
weighted_sum.__doc__ = """RaR explicit / POW3R's static scalar: R = sum_j w_j s_j / sum_{w_j>0} w_j.

  Args:
    pitfall_mode: flip (pitfall s' = 1 - s, w' = |w|; POW3R A.4) or signed (HealthBench).
"""

uniform = base.register("uniform", static=True)(_linear(jnp.sign))
uniform.__doc__ = """Mean verdict over real criteria (pitfalls keep their sign under `signed`).

  Args:
    pitfall_mode: flip (pitfall s' = 1 - s, w' = |w|; POW3R A.4) or signed (HealthBench).
"""


@base.register("strict", static=True)
def strict(pitfall_mode: str = "flip") -> base.Aggregator:
  """R = 1[every required criterion passes] (POW3R's binary baseline).

  A pitfall passes when it is avoided, in either pitfall mode. A prompt with no
  required criterion requires all of them. Required criteria without a verdict
  are left out; a rollout with none left falls back to the group mean.

  Args:
    pitfall_mode: flip or signed; strict passes an avoided pitfall either way.
  """
  check_pitfall_mode(pitfall_mode)

  def update(scores, valid, rubric: RubricBatch, state):
    target = strict_targets(rubric)[:, None, :] & valid
    failed = jnp.any(target & ~passes(scores, rubric), -1)
    has_valid = jnp.any(target, -1)
    raw = (~failed).astype(jnp.float32)
    t = strict_targets(rubric).astype(jnp.float32)
    metrics = {"weights": base.normalized_weights(t),
               **base.verdict_metrics(valid, rubric, has_valid)}
    return base.fill_from_group(raw, has_valid), state, metrics

  return base.Aggregator(base.init_empty, update)


@base.register("category_balanced", static=True)
def category_balanced(pitfall_mode: str = "flip") -> base.Aggregator:
  """POW3R Eq. 3: R = (1/K_q) sum_{k nonempty} (1/W_k) sum_{j in C_k} w_j s_j.

  Each category present in the prompt gets an equal share of the reward,
  whatever its size or human weight mass.

  Args:
    pitfall_mode: flip (pitfall s' = 1 - s, w' = |w|; POW3R A.4) or signed (HealthBench).
  """
  check_pitfall_mode(pitfall_mode)
  signed = pitfall_mode == "signed"

  def update(scores, valid, rubric: RubricBatch, state):
    w, s = apply_pitfalls(scores, rubric, pitfall_mode)
    same = same_category(rubric)
    coef, has_valid = base.category_coefficients(w, base.present(valid, rubric), same, signed)
    raw = jnp.sum(coef * s, -1)
    full, _ = base.category_coefficients(w, rubric.mask[:, None, :], same, signed)
    metrics = {"weights": base.normalized_weights(full[:, 0]),
               **base.verdict_metrics(valid, rubric, has_valid)}
    return base.fill_from_group(raw, has_valid), state, metrics

  return base.Aggregator(base.init_empty, update)


def static_reward(scores, valid, rubric: RubricBatch, pitfall_mode: str = "signed"):
  """[B, G] static weighted score (the evaluation objective), no group fill-in."""
  w, s = apply_pitfalls(base.usable_scores(scores, valid, rubric), rubric, pitfall_mode)
  raw, _ = _linear_rewards(w, s, valid, rubric, pitfall_mode == "signed")
  return raw

