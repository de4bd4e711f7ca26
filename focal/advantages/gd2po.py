"""GD²PO (arXiv 2606.16771): GDPO's per-criterion group advantages, with rollouts whose
criteria disagree in sign filtered out and each prompt's update scaled by its consensus.

Transcribed from the public code, github.com/Qwen-Applications/GD2PO at commit
f1ad765bc9a330e6cf387f95e9c1e5a6c4bb2d02 (built on verl):
`tool-calling/verl/trainer/ppo/ray_trainer.py` (`compute_advantage`'s branches
`gdpo_filter_group_ratio` and `gdpo_filter_ratio_conflict_group_ratio`, with
`_compute_active_gdpo_advantages`, `_get_mixed_sign_conflict_mask`,
`_compute_gdpo_group_keep_ratio`, `_apply_gdpo_keep_mask`),
`verl/trainer/ppo/core_algos.py::compute_grpo_outcome_advantage` and
`verl/utils/torch_functional.py::masked_whiten`. The safe-alignment copy is the
same algorithm written for two rewards. tests/test_advantages.py checks this
module against a NumPy transcription of those functions.

The public code has two variants, both here (`variant`):
  hard: `run_gd2po_hard.sh` (adv_estimator=gdpo_filter_group_ratio): drop every
    rollout in conflict.
  snr:  `run_gd2po_snr.sh` (adv_estimator=gdpo_filter_ratio_conflict_group_ratio):
    drop a rollout in conflict only when its criteria nearly cancel, |ratio| < tau
    (tau = 0.8 in both tasks' scripts, the default here; verl's yaml default is 0.2).

Per group of G rollouts (one prompt), criterion k, on the pitfall-handled scale:
  A_ik    = (r_ik - mean_k) / (std_k + eps)       std with ddof = 1 (torch.std), eps = 1e-6
  c_ik    = w_k A_ik                               `weights`: equal (w_k = 1: the public
                                                   code) or rubric (|w_k| / sum_l |w_l|)
  conflict_i = any_k c_ik > sign_eps and any_k c_ik < -sign_eps        (sign_eps = 1e-8)
  ratio_i = sum_k c_ik / (sum_k |c_ik| + ratio_eps)                    (snr; 1e-8 as in
                                                                        the tool-calling runs)
  keep_i  = not conflict_i  (hard)  |  not (conflict_i and |ratio_i| < tau)  (snr)
  q       = (kept rollouts of the group) / (rollouts of the group)     the consensus weight
  x_i     = q keep_i sum_k c_ik
  A_i     = keep_i (x_i - m) / sqrt(v + 1e-8)     m, v: mean and ddof-1 variance of x over
                                                  the kept rollouts of the whole batch
                                                  (`masked_whiten`; `whiten=False` skips it)
Rollouts are one token here: verl whitens over tokens, which for responses of
equal length L counts N L entries in the Bessel factor instead of N, and weighs
longer responses more when lengths differ.

What the public code does not define (it has no invalid verdicts or padding),
decided here:
  * Statistics of criterion k run over its valid verdicts; an invalid verdict
    gives A_ik = 0 (no sign, so it takes no part in a conflict). A criterion with
    fewer than 2 valid verdicts in the group, or std <= zero_std_tol, gives
    A = 0 (verl: a group of one rollout gets mean 0, std 1, so A = r; equal
    verdicts give 0/(0 + eps) = 0, which the tolerance keeps exact for graded
    float verdicts too).
  * A rollout without any valid verdict gets A = 0 and counts neither in q nor
    in the whitening.
  * Fewer than 2 kept rollouts in the batch: every advantage is 0 (verl's
    masked_var raises for exactly one).
  * A group whose criteria all carry no signal (every A_ik = 0) is kept with
    x = 0 and, as in verl, whitened with the rest (it gets -m / sqrt(v)); it is
    counted as a zero-variance group.
"""
from __future__ import annotations

import jax.numpy as jnp

from focal.advantages.base import (Estimator, check_common, common_metrics, masked_mean_std,
                                   register_estimator)
from focal.aggregators.base import check_range, normalized_weights, present
from focal.rubric import RubricBatch, apply_pitfalls, check_pitfall_mode, safe_div

VARIANTS = ("hard", "snr")
WEIGHTINGS = ("rubric", "equal")
WHITEN_EPS = 1e-8  # verl's masked_whiten: rsqrt(var + 1e-8), means over (count + 1e-8)


def _criterion_coefficients(w, mask, weights: str):
  """[B, K] w_k: |w| normalised per prompt (rubric) or the sign of w (equal)."""
  if weights == "rubric":
    return normalized_weights(w)
  return jnp.where(w < 0, -1.0, 1.0) * mask


def masked_whiten(x, keep):
  """verl's masked_whiten over the `keep` entries of x [B, G] (ddof 1); 0 elsewhere, and 0
  everywhere when fewer than two entries are kept."""
  k = keep.astype(x.dtype)
  n = jnp.sum(k)
  mean = jnp.sum(x * k) / (n + WHITEN_EPS)
  var = jnp.sum(k * jnp.square(x - mean)) / (n + WHITEN_EPS) * safe_div(n, n - 1.0)
  return jnp.where(keep & (n >= 2), (x - mean) * jnp.reciprocal(jnp.sqrt(var + WHITEN_EPS)), 0.0)


def gd2po_parts(scores, valid, rubric: RubricBatch, *, variant, tau, weights, eps, sign_eps,
                ratio_eps, pitfall_mode, zero_std_tol):
  """The module docstring's quantities before whitening, as a dict of arrays:
  c [B, G, K], coef [B, K], live [B, K], has/conflict/keep [B, G] bool, q [B, 1], x [B, G]."""
  w, r = apply_pitfalls(scores, rubric, pitfall_mode)
  pres = present(valid, rubric)
  mu, sigma = masked_mean_std(r, pres, 1, ddof=1)
  live = (sigma[:, 0] > zero_std_tol) & rubric.mask
  a = jnp.where(pres & live[:, None, :], (r - mu) / (sigma + eps), 0.0)
  coef = _criterion_coefficients(w, rubric.mask, weights)
  c = coef[:, None, :] * a
  has = jnp.any(pres, -1)
  conflict = jnp.any(c > sign_eps, -1) & jnp.any(c < -sign_eps, -1)
  total = jnp.sum(c, -1)
  if variant == "snr":
    ratio = total / (jnp.sum(jnp.abs(c), -1) + ratio_eps)
    conflict_dropped = conflict & (jnp.abs(ratio) < tau)
  else:
    conflict_dropped = conflict
  keep = has & ~conflict_dropped
  q = safe_div(jnp.sum(keep, -1, keepdims=True).astype(c.dtype),
               jnp.sum(has, -1, keepdims=True).astype(c.dtype))
  return {"c": c, "coef": coef, "live": live, "has": has, "conflict": conflict & has,
          "keep": keep, "q": q, "x": q * keep * total}


@register_estimator("gd2po")
def gd2po(variant: str = "hard", tau: float = 0.8, weights: str = "rubric", whiten: bool = True,
          eps: float = 1e-6, sign_eps: float = 1e-8, ratio_eps: float = 1e-8,
          pitfall_mode: str = "flip", zero_std_tol: float = 1e-6) -> Estimator:
  """GD²PO (see the module docstring for the formulas and the public code they follow).

  Args:
    variant: hard (drop every rollout whose criteria's advantages disagree in sign)
      or snr (drop it only when they nearly cancel, |ratio| < tau).
    tau: snr's threshold on |sum c| / sum |c|, in [0, 1] (the public scripts: 0.8).
    weights: rubric (criterion k's advantage weighted by |w_k| / sum |w|, as `gdpo`)
      or equal (every criterion weight 1: the public code, whose rewards are unweighted).
    whiten: standardise over the batch's kept rollouts (verl's use_masked_whiten_in_gdpo).
    eps: added to each criterion's group std.
    sign_eps: |c| above which an advantage has a sign.
    ratio_eps: added to sum |c| in snr's ratio.
    pitfall_mode: flip (r = 1 - s, w = |w| for pitfalls) or signed; the advantages are
      the same in both.
    zero_std_tol: a criterion whose group std is at or below this carries no signal.

  Metrics: the common ones, `weights` [B, K], `live_criteria_frac`, `conflict_frac` and
  `dropped_frac` (shares of rollouts with a verdict in conflict / filtered out), and
  `group_keep_ratio` (mean consensus weight q over groups with a verdict).
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant={variant!r}; choose one of {VARIANTS}")
  if weights not in WEIGHTINGS:
    raise ValueError(f"weights={weights!r}; choose one of {WEIGHTINGS}")
  check_range("tau", tau, 0.0, 1.0)
  check_range("sign_eps", sign_eps, 0.0)
  check_range("ratio_eps", ratio_eps, 0.0, None, lo_open=True)
  check_common(eps, zero_std_tol)
  check_pitfall_mode(pitfall_mode)
  hp = dict(variant=variant, tau=tau, weights=weights, eps=eps, sign_eps=sign_eps,
            ratio_eps=ratio_eps, pitfall_mode=pitfall_mode, zero_std_tol=zero_std_tol)

  def estimate(rewards, scores, valid, rubric: RubricBatch):
    del rewards
    p = gd2po_parts(scores, valid, rubric, **hp)
    adv = masked_whiten(p["x"], p["keep"]) if whiten else p["x"]
    zero = ~jnp.any(p["live"] & (p["coef"] != 0), -1)
    n_has = jnp.sum(p["has"]).astype(jnp.float32)
    group_has = jnp.any(p["has"], -1)
    return adv, {**common_metrics(adv, zero, p["has"]),
                 "weights": normalized_weights(p["coef"]),
                 "live_criteria_frac": jnp.sum(p["live"]) / jnp.sum(rubric.mask),
                 "conflict_frac": safe_div(jnp.sum(p["conflict"]).astype(jnp.float32), n_has),
                 "dropped_frac": safe_div(jnp.sum(p["has"] & ~p["keep"]).astype(jnp.float32),
                                          n_has),
                 "group_keep_ratio": safe_div(jnp.sum(p["q"][:, 0] * group_has),
                                              jnp.sum(group_has).astype(jnp.float32))}

  return estimate
