"""The two Focal Reward variants its abstract leaves open (RECONSTRUCTIONS; issue 36).

Summaries of arXiv 2605.26579 disagree on where the reweighting coefficient acts,
and one unofficial implementation estimates saturation differently from the
"inverse reward projection". `focal_reward.focal` takes both as knobs; the
defaults (`saturation='inverse_projection'`, `placement='reward'`) are METHODS §4
unchanged, bit for bit. Notation as in `focal_reward` (s on the satisfaction
scale, pitfalls flipped; b the static shares; f the coefficients).

saturation='ema_headroom' (the unofficial implementation's estimate):
  M_k <- decay M_k + (1 - decay) mean_i s_ik     at every visit of the prompt
  sat_k = M_k,  headroom H_k = 1 - M_k
  mean over the group's valid verdicts of criterion k; M = 0 before the first
  visit (full headroom); a criterion without a valid verdict in a visit keeps
  its M. The coefficients stay Focal's, f_k ∝ b_k (H_k + eps)^gamma (then the
  optional floor/cap): the unofficial H_k / sum_l H_l is gamma = 1, eps = 0 with
  equal human weights. The unofficial code keeps one M per reward branch across
  the batch ("batch-level"); a rubric criterion exists only in its own prompt,
  so its batch-level mean is its group's mean, and M lives in the per-prompt
  state table keyed by the stable prompt id (as Focal's `ema`).

placement='advantage' (the coefficient scales each criterion's advantage, its
"branch", instead of its verdict):
  z_ik = (s_ik - mu_k) / (sigma_k + 1e-6)    mu, sigma: mean and population std
                                              of criterion k's valid verdicts in
                                              the group; z = 0 for an invalid
                                              verdict or when sigma_k <= 1e-6
  R_i  = sum_k f_k z_ik
  The aggregator returns this R [B, G], so every trainer, sweep and the
  simulator run it unchanged: its group mean is 0, so `dr_grpo` passes it on as
  the advantage (the bare "weighted sum of branch advantages") and `grpo`
  rescales it by its group std (the default; ratios inside a group are kept).
  Under `pitfall_mode='signed'` the coefficient of a pitfall is -f_k on the raw
  verdict, whose z is minus the flipped one: R is the same in both modes. It is
  an advantage, not a score in [0, 1]; criterion-level estimators ignore it.
"""
from __future__ import annotations

import jax.numpy as jnp

from focal.rubric import safe_div

SATURATIONS = ("inverse_projection", "ema_headroom")
PLACEMENTS = ("reward", "advantage")
BRANCH_EPS = 1e-6      # added to sigma_k in z (GDPO's eps)
BRANCH_ZERO_STD = 1e-6  # a criterion whose group std is at or below this carries no signal


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
  if value not in choices:
    raise ValueError(f"{name}={value!r}; choose one of {choices}")
  return value


def group_means(s, present_mask):
  """(mean [B, K], count [B, K]) of criterion k's present verdicts in each group."""
  pres = present_mask.astype(s.dtype)
  count = jnp.sum(pres, 1)
  return safe_div(jnp.sum(s * pres, 1), count), count


def headroom_update(old, s, present_mask, mask, decay):
  """M [B, K] after this visit: decay M + (1 - decay) mean where the criterion was judged.

  old: [B, K] M before the visit (0 before the first one); s: [B, G, K] satisfaction
  scale; present_mask: [B, G, K] real criteria with a verdict; mask: [B, K] real criteria.
  """
  mean, count = group_means(s, present_mask)
  return jnp.where(count > 0, decay * old + (1.0 - decay) * mean, old) * mask


def branch_advantages(s, present_mask, mask):
  """z [B, G, K]: each criterion's verdicts standardised inside the group (module docstring)."""
  pres = present_mask.astype(s.dtype)
  mu, count = group_means(s, present_mask)
  var = safe_div(jnp.sum(pres * jnp.square(s - mu[:, None, :]), 1), count)
  sigma = jnp.sqrt(jnp.maximum(var, 0.0))
  live = (sigma > BRANCH_ZERO_STD) & mask
  z = (s - mu[:, None, :]) / (sigma[:, None, :] + BRANCH_EPS)
  return jnp.where(present_mask & live[:, None, :], z, 0.0)


def branch_advantage_sum(coef, s, present_mask, mask):
  """R_i = sum_k coef_k z_ik; (R [B, G], has_valid [B, G])."""
  z = branch_advantages(s, present_mask, mask)
  return jnp.einsum("bk,bgk->bg", coef, z), jnp.any(present_mask, -1)
