"""POW3R x Focal: POW3R's policy-aware factors times Focal's saturation factor.

Coefficients w_j alpha_j c_j, with alpha_j POW3R's factor from before the visit
(updated after it exactly as in `pow3r`) and c_j = (1 - sat_j + focal_eps)^gamma
Focal's saturation factor from this visit's inverse reward projection
(`focal_reward.saturation`, optionally smoothed across visits with `ema`),
renormalised within categories like POW3R's Eq. 8 (the R_cat form):

  R = (1/K_q) sum_k sum_{j in C_k} w_j alpha_j c_j s_j / sum_{j in C_k} w_j alpha_j c_j.

The two signals are complementary by construction: alpha tracks how much a
criterion splits the group (a slow EMA across visits), c how saturated it is
among the rollouts the reward already favours (this visit). A category whose
criteria are all fully saturated with focal_eps = 0 has no mass and drops out.
Nobody has measured this combination: it is an untested proposal, not a
published method.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from focal.aggregators import base, focal_reward, pow3r as pow3r_lib, prompt_state
from focal.rubric import RubricBatch, apply_pitfalls, check_pitfall_mode, same_category

# The defaults are POW3R's and Focal's own, never restated here.
P, F = pow3r_lib.DEFAULTS, focal_reward.DEFAULTS


class Pow3rFocalState(NamedTuple):
  alpha: Any  # [num_prompts, K] POW3R factors.
  focal: Any  # EmptyState (ema = 0) or focal_reward.FocalState.


@base.register("pow3r_focal")
def pow3r_focal(lam: float = P.lam, beta: float = P.beta, alpha_min: float = P.alpha_min,
                alpha_max: float = P.alpha_max, eps: float = P.eps,
                min_valid_frac: float = P.min_valid_frac, temperature: float = F.temperature,
                gamma: float = F.gamma, focal_eps: float = F.eps, ema: float = F.ema,
                pitfall_mode: str = "flip") -> base.Aggregator:
  """POW3R's factors times Focal's saturation factor (see the module docstring).

  Args:
    lam, beta, alpha_min, alpha_max, eps, min_valid_frac: POW3R's (see `pow3r`).
    temperature, gamma, ema: Focal's (see `focal`).
    focal_eps: Focal's eps inside (1 - sat + eps) (named apart from POW3R's eps).
    pitfall_mode: flip (pitfalls as avoid-criteria) or signed (HealthBench).

  `eps` is POW3R's variance floor; `focal_eps` is Focal's eps. Metrics: `weights`,
  `factors`, `saturation`, `saturated_frac`, `dead_frac`,
  `pressure_zero_signal`, verdict counters.
  """
  p_hp = pow3r_lib.pow3r_hparams(lam, beta, alpha_min, alpha_max, eps, min_valid_frac)
  # Checked here first so that the error names this aggregator's field.
  focal_eps = base.check_range("focal_eps", focal_eps, 0.0, None)
  f_hp = focal_reward.focal_hparams(temperature, gamma, focal_eps, 0.0, 1.0, ema)
  check_pitfall_mode(pitfall_mode)
  signed = pitfall_mode == "signed"

  def init(num_prompts: int, max_criteria: int) -> Pow3rFocalState:
    focal_init = focal_reward.init_focal_state if ema > 0.0 else base.init_empty
    return Pow3rFocalState(alpha=pow3r_lib.init_factors(num_prompts, max_criteria).alpha,
                           focal=focal_init(num_prompts, max_criteria))

  def update(scores, valid, rubric: RubricBatch, state: Pow3rFocalState):
    w, s = apply_pitfalls(scores, rubric, pitfall_mode)
    same = same_category(rubric)
    alpha = prompt_state.gather_rows(state.alpha, rubric.prompt_ids)
    sat, _, focal_state = focal_reward.visit_saturation(scores, valid, rubric, state.focal, f_hp)
    tilt = focal_reward.saturation_factor(sat, f_hp.gamma, f_hp.eps)
    rewards, has_valid, weights = pow3r_lib.category_rewards(w * alpha * tilt, s, valid, rubric,
                                                             same, signed)

    _, s_sat = apply_pitfalls(scores, rubric, "flip")
    stats = pow3r_lib.visit_stats(s_sat, base.present(valid, rubric))
    new_alpha = pow3r_lib.update_factors(alpha, stats, jnp.abs(w), rubric.mask, same,
                                         scores.shape[1], p_hp)
    new_state = Pow3rFocalState(
        alpha=prompt_state.scatter_rows(state.alpha, rubric.prompt_ids, new_alpha),
        focal=focal_state)
    metrics = {"weights": weights, "factors": new_alpha, "saturation": sat,
               **pow3r_lib.diagnostics(weights, stats, rubric.mask),
               **base.verdict_metrics(valid, rubric, has_valid)}
    return rewards, new_state, metrics

  return base.Aggregator(init, update)
