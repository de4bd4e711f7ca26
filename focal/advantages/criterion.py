"""Criterion-level estimators (METHODS §4 SA-MRPO, §5 GDPO and DVAO): standardise each
criterion's verdicts inside the group, then combine them."""
from __future__ import annotations

import jax.numpy as jnp

from focal.advantages.base import (Estimator, check_common, common_metrics, masked_mean_std,
                                   register_estimator)
from focal.aggregators.base import check_range, normalized_weights, present
from focal.rubric import RubricBatch, apply_pitfalls, check_pitfall_mode, safe_div



def _criterion_stats(scores, valid, rubric, pitfall_mode, eps, zero_std_tol):
  """Per-criterion group standardisation over valid verdicts.

  Returns a dict with
    w [B, K]: weights after pitfall handling (0 on padding),
    mu, sigma [B, K]: group mean / std (ddof=0) of r over valid verdicts,
    count [B, K]: valid verdicts per criterion,
    live [B, K]: real criteria with sigma > zero_std_tol,
    z [B, G, K]: (r - mu) / (sigma + eps), 0 for invalid verdicts or dead criteria,
    has [B, G]: rollouts with a verdict.
  """
  w, r = apply_pitfalls(scores, rubric, pitfall_mode)
  pres = present(valid, rubric)
  mu, sigma = masked_mean_std(r, pres, 1)
  mu, sigma = mu[:, 0], sigma[:, 0]
  live = (sigma > zero_std_tol) & rubric.mask
  z = jnp.where(pres & live[:, None, :], (r - mu[:, None, :]) / (sigma[:, None, :] + eps), 0.0)
  return {"w": w, "mu": mu, "sigma": sigma, "count": jnp.sum(pres, 1), "live": live, "z": z,
          "has": jnp.any(pres, -1)}


def _batch_standardize(raw, informative, eps):
  """GDPO's final step: standardise over the batch's informative rollouts.

  Non-informative rollouts (no verdict, or a group without a live criterion)
  stay at exactly 0: shifting them by the batch mean would hand them a signal
  they do not carry.
  """
  mean, std = masked_mean_std(raw, informative, (0, 1))
  return jnp.where(informative, (raw - mean) / (std + eps), 0.0)


def _criterion_metrics(adv, st, coef, rubric, zero_group) -> dict:
  n_real = jnp.sum(rubric.mask).astype(jnp.float32)
  return {**common_metrics(adv, zero_group, st["has"]),
          "weights": normalized_weights(coef),
          "live_criteria_frac": jnp.sum(st["live"]) / n_real}


def _weighted_standardized(coef, st, eps):
  """sum_k coef_k A_k, then batch standardisation; returns (adv, zero_group).

  A group is zero-variance when no live criterion carries a non-zero
  coefficient (SA-MRPO can zero the only live one).
  """
  zero = ~jnp.any(st["live"] & (coef != 0), -1)
  raw = jnp.einsum("bk,bgk->bg", coef, st["z"])
  return _batch_standardize(raw, st["has"] & ~zero[:, None], eps), zero


def _criterion_estimator(eps, pitfall_mode, zero_std_tol, combine) -> Estimator:
  """An estimator from `combine(stats, rubric) -> (advantages [B, G], coefficients [B, K],
  zero-variance groups [B], extra metrics)` over `_criterion_stats`."""
  check_common(eps, zero_std_tol)
  check_pitfall_mode(pitfall_mode)

  def estimate(rewards, scores, valid, rubric: RubricBatch):
    del rewards
    st = _criterion_stats(scores, valid, rubric, pitfall_mode, eps, zero_std_tol)
    adv, coef, zero, extra = combine(st, rubric)
    return adv, {**_criterion_metrics(adv, st, coef, rubric, zero), **extra}

  return estimate


# The hyper-parameters every criterion-level estimator has, appended to their docstrings.
_ARG_LINES = """\
    eps: added to the std in the denominator.
    pitfall_mode: flip (r = 1 - s, w = |w| for pitfalls) or signed.
    zero_std_tol: a group (or criterion) whose std is at or below this carries no signal.
"""


@register_estimator("gdpo")
def gdpo(eps: float = 1e-6, pitfall_mode: str = "flip", zero_std_tol: float = 1e-6) -> Estimator:
  """GDPO: A_k = (r_k - mu_k)/(sigma_k + eps) per criterion per group;
  A = sum_k w_k A_k with w normalised so sum_k |w_k| = 1 over the prompt's real
  criteria; then A is standardised over the batch.
  """
  def combine(st, rubric):
    coef = normalized_weights(st["w"])
    adv, zero = _weighted_standardized(coef, st, eps)
    return adv, coef, zero, {}

  return _criterion_estimator(eps, pitfall_mode, zero_std_tol, combine)


@register_estimator("dvao")
def dvao(eps: float = 1e-6, pitfall_mode: str = "flip", zero_std_tol: float = 1e-6) -> Estimator:
  """DVAO: v_k = b_k sigma_k / sum_l |b_l| sigma_l, A_i = sum_k v_k (r_ik - mu_k)/(sigma_k + eps).

  b = human weights normalised to sum |b| = 1. The denominator takes |b| so that
  `signed` pitfalls (b < 0) cannot cancel it; under `flip` every b >= 0 and it
  is the formula as written. A group with <= 1 rollout with a verdict, or with
  every sigma <= zero_std_tol, gets 0. No batch standardisation.
  """
  def combine(st, rubric):
    b = normalized_weights(st["w"])
    sigma = jnp.where(st["live"], st["sigma"], 0.0)
    v = safe_div(b * sigma, jnp.sum(jnp.abs(b) * sigma, -1, keepdims=True))
    few = jnp.sum(st["has"], -1) <= 1
    zero = few | ~jnp.any(st["live"], -1)
    adv = jnp.where(zero[:, None] | ~st["has"], 0.0, jnp.einsum("bk,bgk->bg", v, st["z"]))
    return adv, v, zero, {}

  return _criterion_estimator(eps, pitfall_mode, zero_std_tol, combine)


def saturation(mu, count, rubric: RubricBatch, zero_std_tol: float):
  """SA-MRPO saturation [B, K]: s_k = (mu_k - min) / (max - min).

  mu_k is the criterion's mean (pitfall-handled) verdict over the group's
  valid verdicts; min and max run over the prompt's real criteria that have at
  least one valid verdict. When max - min <= zero_std_tol (one such criterion,
  or all at the same level) there is no relative evidence of saturation and
  every s_k is 0, so SA-MRPO falls back to GDPO's weights. Criteria without a
  valid verdict get s = 0.
  """
  seen = rubric.mask & (count > 0)
  lo = jnp.min(jnp.where(seen, mu, jnp.inf), -1, keepdims=True)
  hi = jnp.max(jnp.where(seen, mu, -jnp.inf), -1, keepdims=True)
  spread = jnp.where(jnp.any(seen, -1, keepdims=True), hi - lo, 0.0)
  ok = seen & (spread > zero_std_tol)
  return jnp.where(ok, (mu - jnp.where(ok, lo, 0.0)) / jnp.where(ok, spread, 1.0), 0.0)


@register_estimator("sa_mrpo")
def sa_mrpo(gamma: float = 1.0, eps: float = 1e-6, pitfall_mode: str = "flip",
            zero_std_tol: float = 1e-6) -> Estimator:
  """SA-MRPO: GDPO with weights w_k (1 - s_k)^gamma (see `saturation`).

  The reweighted coefficients are renormalised to sum |c| = 1 per prompt (as
  GDPO's), combined with the per-criterion group advantages, and standardised
  over the batch. gamma = 0 is exactly GDPO. The most saturated criterion of a
  prompt gets s = 1 and, for gamma > 0, weight 0. The paper's gamma was not
  available; the default 1.0 is a mild choice (`--config.advantage.sa_mrpo.gamma`).

  Args:
    gamma: exponent on (1 - saturation); 0 is exactly GDPO.
"""
  check_range("gamma", gamma, 0.0)

  def combine(st, rubric):
    sat = saturation(st["mu"], st["count"], rubric, zero_std_tol)
    coef = normalized_weights(normalized_weights(st["w"]) * jnp.power(1.0 - sat, gamma))
    adv, zero = _weighted_standardized(coef, st, eps)
    return adv, coef, zero, {"saturation": sat}

  return _criterion_estimator(eps, pitfall_mode, zero_std_tol, combine)


gdpo.__doc__ += "\n  Args:\n" + _ARG_LINES
dvao.__doc__ += "\n  Args:\n" + _ARG_LINES
sa_mrpo.__doc__ += _ARG_LINES
