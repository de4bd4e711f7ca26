"""POW3R (arXiv 2605.20164, METHODS §3): policy-aware factors on the category-balanced reward.

Each (prompt, criterion) carries a factor alpha_j, 1 at the start, kept in a
table keyed by the stable prompt id. A visit of a prompt:

1. rewards its G rollouts with the factors from before the visit (Eq. 8):
   w~_j = w_j alpha_j, renormalised within categories exactly like
   `category_balanced` (R = (1/K_q) sum_k (1/W~_k) sum_{j in C_k} w~_j s_j);
2. then moves the factors toward how much each criterion splits this group:
     p_j = mean_{i in V_j} s_ij,  v_j = mean_{i in V_j} (s_ij - p_j)^2,  g_j = sqrt(v_j + eps)
     gbar_k = sum_{j' in C_k} w_j' g_j' / sum_{j' in C_k} w_j'   (criteria with enough verdicts)
     ahat_j = clip((1 - lam) + lam g_j / gbar_{kappa_j}, alpha_min, alpha_max)
     alpha_j <- clip((1 - beta) alpha_j + beta ahat_j, alpha_min, alpha_max)
   A criterion with fewer than ceil(min_valid_frac G) valid verdicts keeps its
   factor and stays out of gbar; a category where no such criterion shows any
   contrast gets ahat = 1.

Verdict statistics use the satisfaction scale (pitfalls flipped); v_j does not
depend on that choice, and gbar weighs criteria by |w_j|.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from focal.aggregators import base, prompt_state
from focal.rubric import (RubricBatch, apply_pitfalls, check_pitfall_mode, min_valid_count,
                          safe_div, same_category)


class Pow3rState(NamedTuple):
  alpha: Any  # [num_prompts, K] float32 factors, 1 at the start.


class Pow3rHParams(NamedTuple):
  """POW3R's hyper-parameters; these defaults (the paper's) are the only place they are set."""
  lam: float = 0.5              # mix of the contrast ratio rho into the target factor
  beta: float = 0.2             # EMA rate of the factors across visits
  alpha_min: float = 0.67       # lower clip of the factors
  alpha_max: float = 1.5        # upper clip of the factors
  eps: float = 1e-4             # floor inside sqrt(v + eps): dead categories stay finite
  min_valid_frac: float = 0.75  # a criterion updates with >= ceil(frac * G) valid verdicts


DEFAULTS = Pow3rHParams()


def pow3r_hparams(lam=DEFAULTS.lam, beta=DEFAULTS.beta, alpha_min=DEFAULTS.alpha_min,
                  alpha_max=DEFAULTS.alpha_max, eps=DEFAULTS.eps,
                  min_valid_frac=DEFAULTS.min_valid_frac) -> Pow3rHParams:
  """Validated POW3R hyper-parameters (ValueError naming the field)."""
  lam = base.check_range("lam", lam, 0.0, 1.0)
  beta = base.check_range("beta", beta, 0.0, 1.0, lo_open=True)
  alpha_min = base.check_range("alpha_min", alpha_min, 0.0, 1.0, lo_open=True)
  alpha_max = base.check_range("alpha_max", alpha_max, 1.0, None)
  if alpha_max == float("inf"):
    raise ValueError("alpha_max=inf: it must be finite")
  eps = base.check_range("eps", eps, 0.0, None, lo_open=True)
  min_valid_frac = base.check_range("min_valid_frac", min_valid_frac, 0.0, 1.0, lo_open=True)
  return Pow3rHParams(lam, beta, alpha_min, alpha_max, eps, min_valid_frac)


def init_factors(num_prompts: int, max_criteria: int) -> Pow3rState:
  return Pow3rState(alpha=jnp.ones((num_prompts, max_criteria), jnp.float32))


class VisitStats(NamedTuple):
  """Per-criterion statistics of one visit, all [B, K]."""
  count: Any      # valid verdicts of a real criterion.
  pass_rate: Any  # p_j (0 without verdicts).
  variance: Any   # v_j, exactly 0 when every valid verdict is equal.
  flat: Any       # bool: has verdicts, all equal (v_j = 0: no contrast in the group).
  saturated: Any  # bool: has verdicts, all 1 (p_j = 1).
  dead: Any       # bool: has verdicts, all 0 (p_j = 0).


def visit_stats(s, present_mask) -> VisitStats:
  """Pass rate and variance of each criterion over its valid verdicts.

  Args:
    s: [B, G, K] verdicts on the satisfaction scale (pitfalls flipped).
    present_mask: [B, G, K] bool, real criteria with a verdict.
  """
  pres = present_mask.astype(jnp.float32)
  count = jnp.sum(pres, 1)
  p = safe_div(jnp.sum(pres * s, 1), count)
  v = safe_div(jnp.sum(pres * jnp.square(s - p[:, None, :]), 1), count)
  hi = jnp.max(jnp.where(present_mask, s, -jnp.inf), 1)
  lo = jnp.min(jnp.where(present_mask, s, jnp.inf), 1)
  has = count > 0
  # Decided on the raw verdicts: a rounded mean of equal graded verdicts can
  # leave v at ~1e-16, which must still count as no signal.
  flat = has & (hi <= lo)
  return VisitStats(count=count, pass_rate=p, variance=jnp.where(flat, 0.0, v), flat=flat,
                    saturated=has & (lo >= 1.0), dead=has & (hi <= 0.0))


def factor_targets(stats: VisitStats, weights_abs, eligible, same, hp: Pow3rHParams):
  """ahat [B, K]: the factor each criterion's contrast asks for.

  Args:
    weights_abs: [B, K] non-negative human weights |w_j|.
    eligible: [B, K] bool, real criteria with enough valid verdicts.
    same: [B, K, K] same-category matrix.
  """
  g = jnp.sqrt(stats.variance + hp.eps)
  we = weights_abs * eligible
  cat_mass = jnp.einsum("bjl,bl->bj", same, we)
  gbar = safe_div(jnp.einsum("bjl,bl->bj", same, we * g), cat_mass)
  signal = jnp.einsum("bjl,bl->bj", same, (eligible & ~stats.flat).astype(jnp.float32)) > 0
  rho = safe_div(g, gbar)
  ahat = jnp.clip((1.0 - hp.lam) + hp.lam * rho, hp.alpha_min, hp.alpha_max)
  # No contrast anywhere in the category (or no weighted criterion to compare
  # against): nothing to prefer, so the factor relaxes toward 1.
  return jnp.where(signal & (cat_mass > 0), ahat, 1.0)


def update_factors(alpha, stats: VisitStats, weights_abs, mask, same, group_size: int,
                   hp: Pow3rHParams):
  """New factors [B, K] after a visit; criteria with too few verdicts keep theirs."""
  eligible = mask & (stats.count >= min_valid_count(group_size, hp.min_valid_frac))
  ahat = factor_targets(stats, weights_abs, eligible, same, hp)
  moved = jnp.clip((1.0 - hp.beta) * alpha + hp.beta * ahat, hp.alpha_min, hp.alpha_max)
  return jnp.where(eligible, moved, alpha)


def diagnostics(weights_metric, stats: VisitStats, mask) -> dict:
  """POW3R's diagnostic metrics of one visit.

  saturated_frac / dead_frac: share of real criteria with verdicts whose pass
    rate is 1 / 0.
  pressure_zero_signal: share of the reward's coefficient mass (the `weights`
    metric, |c| summing to 1 per prompt) on criteria with v_j = 0, averaged over
    prompts; equals (1/K_q) sum_k of the within-category shares w~_j / W~_k.
  """
  judged = (mask & (stats.count > 0)).astype(jnp.float32)
  n = jnp.sum(judged)
  flat = (stats.flat & mask).astype(jnp.float32)
  return {
      "saturated_frac": safe_div(jnp.sum(stats.saturated * judged), n),
      "dead_frac": safe_div(jnp.sum(stats.dead * judged), n),
      "pressure_zero_signal": jnp.mean(jnp.sum(jnp.abs(weights_metric) * flat, -1)),
  }


def category_rewards(w_eff, s, valid, rubric: RubricBatch, same, signed: bool):
  """Category-balanced rewards with effective weights `w_eff [B, K]`.

  Returns (rewards [B, G] with the group fill-in, has_valid [B, G],
  weights metric [B, K]).
  """
  coef, has_valid = base.category_coefficients(w_eff, base.present(valid, rubric), same, signed)
  raw = jnp.sum(coef * s, -1)
  full, _ = base.category_coefficients(w_eff, rubric.mask[:, None, :], same, signed)
  return base.fill_from_group(raw, has_valid), has_valid, base.normalized_weights(full[:, 0])


@base.register("pow3r")
def pow3r(lam: float = DEFAULTS.lam, beta: float = DEFAULTS.beta,
          alpha_min: float = DEFAULTS.alpha_min, alpha_max: float = DEFAULTS.alpha_max,
          eps: float = DEFAULTS.eps, min_valid_frac: float = DEFAULTS.min_valid_frac,
          pitfall_mode: str = "flip") -> base.Aggregator:
  """POW3R: category-balanced reward with per-(prompt, criterion) factors (module docstring).

  Args:
    lam: mix of the contrast ratio rho into the target factor (POW3R lambda).
    beta: EMA rate of the per-(prompt, criterion) factors.
    alpha_min: lower clip of the factors.
    alpha_max: upper clip of the factors.
    eps: floor inside sqrt(v + eps), keeps dead categories finite.
    min_valid_frac: a criterion needs ceil(frac * G) valid verdicts to update its factor.
    pitfall_mode: flip (pitfall s' = 1 - s, w' = |w|; POW3R A.4) or signed (HealthBench).

  State: `Pow3rState(alpha [num_prompts, K])`. Metrics: `weights`, `factors`
  [B, K] (after the visit), `saturated_frac`, `dead_frac`,
  `pressure_zero_signal`, and the verdict counters.
  """
  hp = pow3r_hparams(lam, beta, alpha_min, alpha_max, eps, min_valid_frac)
  check_pitfall_mode(pitfall_mode)
  signed = pitfall_mode == "signed"

  def update(scores, valid, rubric: RubricBatch, state: Pow3rState):
    w, s = apply_pitfalls(scores, rubric, pitfall_mode)
    same = same_category(rubric)
    alpha = prompt_state.gather_rows(state.alpha, rubric.prompt_ids)
    rewards, has_valid, weights = category_rewards(w * alpha, s, valid, rubric, same, signed)

    _, s_sat = apply_pitfalls(scores, rubric, "flip")
    stats = visit_stats(s_sat, base.present(valid, rubric))
    new_alpha = update_factors(alpha, stats, jnp.abs(w), rubric.mask, same, scores.shape[1], hp)
    new_state = Pow3rState(prompt_state.scatter_rows(state.alpha, rubric.prompt_ids, new_alpha))
    metrics = {"weights": weights, "factors": new_alpha,
               **diagnostics(weights, stats, rubric.mask),
               **base.verdict_metrics(valid, rubric, has_valid)}
    return rewards, new_state, metrics

  return base.Aggregator(init_factors, update)
