"""Evaluation metrics (METHODS §7) and HealthBench's official score (METHODS §2).

`compute_metrics(scores [B, G, K], valid [B, G, K], rubric, num_categories)` is
pure and jittable (`num_categories` static) and returns a flat dict of jnp
arrays. A verdict counts when it is valid and on a real criterion; "pass" is
`focal.rubric.passes` (score >= 0.5, or < 0.5 for a pitfall: avoided).

Keys (C = num_categories; category ids must lie in [0, C)):
  mean_reward_pct []: 100 * mean static weighted score (signed, HealthBench
    convention: sum_j w_j s_j / sum_{w_j>0} w_j over valid verdicts; see
    `static.static_reward`) over rollouts with at least one valid verdict.
  strict_completion []: share of rollouts passing every strict target
    (`rubric.strict_targets`); targets without a verdict are left out, as in
    the `strict` aggregator, and rollouts with none left are not counted.
  strict_judged []: number of rollouts that strict_completion counts.
  category_pass_rate [C]: passes / valid verdicts pooled over every
    (prompt, rollout, criterion) of the category; 0 for an empty category.
  category_count [C]: valid verdicts behind each category's rate (0 = empty).
  criterion_pass_rate [B, K]: each criterion's pass rate over its group's
    valid verdicts; 0 where it has none.
  criterion_count [B, K]: valid verdicts behind it.
  slot_pass_rate [K], slot_count [K]: slot k pooled across prompts (meaningful
    when every prompt lists the same criteria in the same order).
  worst_category_pass_rate [], best_category_pass_rate []: over non-empty
    categories (0 if there is none).
  polarization []: best minus worst category pass rate.
  saturated_share [], dead_share []: among real criteria with at least one
    valid verdict, the share whose group pass rate is 1 / 0.
  zero_variance_group_share []: share of groups whose static reward has
    std <= zero_std_tol over rollouts with a verdict (fewer than two count as
    zero-variance: the group teaches nothing).
  static_reward_group_std []: mean within-group std of the static reward
    (POW3R's pre-standardisation std of R).
  zero_signal_share []: share of real criteria with v_j = 0, v_j the variance
    of the raw verdicts over the group's valid ones (a criterion with fewer than
    two valid verdicts has v_j = 0: it carries no contrast).
  zero_signal_pressure []: mean over prompts of sum_{v_j=0} |c_j| / sum_j |c_j|
    with c the aggregator's effective coefficients (`weights`; default
    category-balanced coefficients, POW3R's w_j / W_k share up to the 1/K_q
    factor common to a prompt).

`healthbench_score` implements openai simple-evals' scoring with jnp;
`steps_to_threshold` is a host-side helper for training curves.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from focal.advantages import masked_mean_std
from focal.aggregators.base import category_coefficients, present
from focal.aggregators.static import static_reward
from focal.rubric import (PASS_THRESHOLD, RubricBatch, passes, safe_div, same_category,
                          strict_targets)


def _masked_mean(x, mask):
  m = mask.astype(jnp.float32)
  return safe_div(jnp.sum(x * m), jnp.sum(m))


def _category_onehot(rubric: RubricBatch, num_categories: int):
  """[B, K, C] float32: real criterion k of prompt b belongs to category c."""
  onehot = jax.nn.one_hot(rubric.categories, num_categories, dtype=jnp.float32)
  return onehot * rubric.mask[..., None]


def default_coefficients(rubric: RubricBatch):
  """[B, K] category-balanced coefficients of |w| with every criterion present."""
  coef, _ = category_coefficients(jnp.abs(rubric.weights), rubric.mask[:, None, :],
                                  same_category(rubric))
  return coef[:, 0]


def _reward_metrics(scores, valid, rubric, zero_std_tol) -> dict:
  has = jnp.any(present(valid, rubric), -1)
  reward = static_reward(scores, valid, rubric, "signed")
  _, std = masked_mean_std(reward, has, -1)
  return {
      "mean_reward_pct": 100.0 * _masked_mean(reward, has),
      "zero_variance_group_share": jnp.mean((std[:, 0] <= zero_std_tol).astype(jnp.float32)),
      "static_reward_group_std": jnp.mean(std),
  }


def _strict_metrics(scores, valid, rubric) -> dict:
  target = strict_targets(rubric)[:, None, :] & valid
  judged = jnp.any(target, -1)
  ok = ~jnp.any(target & ~passes(scores, rubric), -1)
  return {"strict_completion": _masked_mean(ok.astype(jnp.float32), judged),
          "strict_judged": jnp.sum(judged).astype(jnp.float32)}


def _pass_rate_metrics(passed, pres, rubric, num_categories) -> dict:
  pf, cf = passed.astype(jnp.float32), pres.astype(jnp.float32)
  onehot = _category_onehot(rubric, num_categories)
  cat_pass = jnp.einsum("bgk,bkc->c", pf, onehot)
  cat_count = jnp.einsum("bgk,bkc->c", cf, onehot)
  cat_rate = safe_div(cat_pass, cat_count)
  nonempty = cat_count > 0
  any_cat = jnp.any(nonempty)
  worst = jnp.where(any_cat, jnp.min(jnp.where(nonempty, cat_rate, jnp.inf)), 0.0)
  best = jnp.where(any_cat, jnp.max(jnp.where(nonempty, cat_rate, -jnp.inf)), 0.0)
  crit_pass, crit_count = jnp.sum(pf, 1), jnp.sum(cf, 1)
  judged = rubric.mask & (crit_count > 0)
  n_judged = jnp.sum(judged).astype(jnp.float32)
  slot_pass, slot_count = jnp.sum(crit_pass, 0), jnp.sum(crit_count, 0)
  return {
      "category_pass_rate": cat_rate,
      "category_count": cat_count,
      "criterion_pass_rate": safe_div(crit_pass, crit_count),
      "criterion_count": crit_count,
      "slot_pass_rate": safe_div(slot_pass, slot_count),
      "slot_count": slot_count,
      "worst_category_pass_rate": worst,
      "best_category_pass_rate": best,
      "polarization": best - worst,
      "saturated_share": safe_div(jnp.sum(judged & (crit_pass == crit_count)), n_judged),
      "dead_share": safe_div(jnp.sum(judged & (crit_pass == 0)), n_judged),
  }


def _signal_metrics(scores, pres, rubric, weights, zero_std_tol) -> dict:
  _, sigma = masked_mean_std(scores, pres, 1)
  zero_signal = rubric.mask & (sigma[:, 0] ** 2 <= zero_std_tol ** 2)
  coef = jnp.abs(default_coefficients(rubric) if weights is None else weights) * rubric.mask
  pressure = safe_div(jnp.sum(coef * zero_signal, -1), jnp.sum(coef, -1))
  return {
      "zero_signal_share": safe_div(jnp.sum(zero_signal).astype(jnp.float32),
                                    jnp.sum(rubric.mask).astype(jnp.float32)),
      "zero_signal_pressure": jnp.mean(pressure),
  }


def compute_metrics(scores, valid, rubric: RubricBatch, num_categories: int, weights=None,
                    zero_std_tol: float = 1e-6) -> dict:
  """Every METHODS §7 metric of one batch of verdicts (keys in the module docstring).

  Args:
    scores: [B, G, K] verdicts in [0, 1].
    valid: [B, G, K] bool, verdicts that exist.
    rubric: the batch's criteria.
    num_categories: C, static; sizes the per-category arrays.
    weights: optional [B, K] effective coefficients of the aggregator (its
      `weights` metric) for `zero_signal_pressure`.
    zero_std_tol: std at or below which a group or criterion has no signal.
  """
  pres = present(valid, rubric)
  return {
      **_reward_metrics(scores, valid, rubric, zero_std_tol),
      **_strict_metrics(scores, valid, rubric),
      **_pass_rate_metrics(passes(scores, rubric) & pres, pres, rubric, num_categories),
      **_signal_metrics(scores, pres, rubric, weights, zero_std_tol),
  }


def _clipped_mean(per_example, counted, axis):
  """simple-evals' `_aggregate_get_clipped_mean`: clip(mean over counted examples, 0, 1)."""
  m = counted.astype(jnp.float32)
  mean = safe_div(jnp.sum(per_example * m, axis), jnp.sum(m, axis))
  return jnp.clip(mean, 0.0, 1.0), mean, jnp.sum(m, axis)


def healthbench_score(scores, valid, rubric: RubricBatch, num_categories: int | None = None,
                      ) -> dict:
  """HealthBench's official score (openai simple-evals `calculate_score`).

  Each rollout is one graded example: score = sum_{met} points /
  sum_{points>0} points, NOT clipped, so pitfalls can drive it below 0. A
  criterion is met when its score >= 0.5 (for a pitfall: the bad behaviour
  happened, and its negative points count). Examples with no positive points
  are skipped (simple-evals returns None for them). The dataset score is the
  mean over examples, clipped to [0, 1].

  Per category (the `axis:` tag), the same formula runs over that category's
  criteria only, skipping examples whose category has no positive points.

  Invalid verdicts are dropped from numerator and denominator (simple-evals
  retries the grader until it answers; here a missing verdict is unknown).

  Returns a dict of jnp arrays:
    healthbench_score []: clipped dataset mean.
    healthbench_score_unclipped []: the mean before clipping.
    healthbench_example_scores [B, G]: per-example scores (0 where skipped).
    healthbench_examples []: examples counted.
  and with `num_categories` = C:
    healthbench_category_score [C]: clipped per-category means (0 if empty).
    healthbench_category_count [C]: examples counted per category.
  """
  pres = present(valid, rubric).astype(jnp.float32)
  points = rubric.weights[:, None, :] * pres
  met = (scores >= PASS_THRESHOLD).astype(jnp.float32)
  achieved, possible = points * met, jnp.maximum(points, 0.0)
  per_example = safe_div(jnp.sum(achieved, -1), jnp.sum(possible, -1))
  counted = jnp.sum(possible, -1) > 0
  clipped, mean, n = _clipped_mean(per_example, counted, (0, 1))
  out = {"healthbench_score": clipped, "healthbench_score_unclipped": mean,
         "healthbench_example_scores": jnp.where(counted, per_example, 0.0),
         "healthbench_examples": n}
  if num_categories is not None:
    onehot = _category_onehot(rubric, num_categories)
    cat_possible = jnp.einsum("bgk,bkc->bgc", possible, onehot)
    cat_score = safe_div(jnp.einsum("bgk,bkc->bgc", achieved, onehot), cat_possible)
    cat_clipped, _, cat_n = _clipped_mean(cat_score, cat_possible > 0, (0, 1))
    out["healthbench_category_score"] = cat_clipped
    out["healthbench_category_count"] = cat_n
  return out


def steps_to_threshold(steps: Sequence[float], values: Sequence[float],
                       thresholds: Sequence[float]) -> dict:
  """First step at which a training curve reaches (>=) each threshold.

  Host-side. NaN values never reach a threshold. Returns {threshold: step or
  None}, keyed by each threshold as a Python float, steps as Python numbers.
  """
  steps = np.asarray(steps)
  values = np.asarray(values, np.float64)
  if steps.shape != values.shape or steps.ndim != 1:
    raise ValueError(f"steps {steps.shape} and values {values.shape} must be equal-length 1-D")
  out = {}
  for t in thresholds:
    t = float(t)
    if math.isnan(t):
      raise ValueError("thresholds must not be NaN")
    hit = np.flatnonzero(values >= t)
    out[t] = steps[hit[0]].item() if hit.size else None
  return out
