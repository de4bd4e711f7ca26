"""Advantage estimators (METHODS §1, §4 SA-MRPO, §5): rewards/verdicts -> advantages [B, G].

`make_estimator(name, **hparams)` returns a pure, jittable function with one signature:

  advantages [B, G], metrics = estimate(rewards [B, G], scores [B, G, K], valid [B, G, K], rubric)

Scalar estimators (`grpo`, `dr_grpo`, `batch_std`) standardise the aggregator's
reward and ignore `scores`; criterion-level estimators (`gdpo`, `dvao`,
`sa_mrpo`) standardise each criterion's verdicts inside the group and ignore
`rewards`. Hyper-parameters are closed over as Python constants.

Shared conventions:
  * A rollout "has a verdict" when at least one real criterion has a valid
    verdict. Rollouts without one get advantage 0 and are left out of every
    mean and std (their reward, if any, was a fill-in by the aggregator).
  * Group statistics are over the rollouts (scalar) or valid verdicts
    (criterion-level) of the group; std uses ddof=0 unless `grpo(ddof=1)`.
  * A group whose advantages would carry no signal (reward std, or every
    criterion's std, at or below `zero_std_tol`, including groups with fewer
    than two rollouts with a verdict) gets advantage 0 and is counted as a
    zero-variance group. The tolerance is applied instead of trusting `eps`
    alone because float32 group means of equal graded verdicts are off by
    ~1e-8, which `/(0 + eps)` would blow up to O(0.01) noise.
  * Invalid verdicts contribute a per-criterion advantage of 0.

Pitfalls: criterion-level estimators take `pitfall_mode` (`flip`: r = 1 - s,
w = |w| for w < 0; `signed`: as given). Standardisation is affine-equivariant,
so both modes give identical `gdpo` and `dvao` advantages; for `sa_mrpo` the
mode changes the saturation of pitfalls (under `flip` a pitfall that is always
avoided is saturated, the meaningful reading).

Metrics of every estimator:
  advantage_std []: std of the advantages over all B*G rollouts.
  zero_variance_groups []: share of groups given advantage 0.
  zero_variance_group_count []: their number.
  rollouts_without_valid []: rollouts with no valid verdict (advantage 0).
Scalar estimators add `reward_group_std` [] (mean within-group std of R before
standardisation); criterion-level ones add `weights` [B, K] (the coefficients
applied to per-criterion advantages of the pitfall-handled verdicts, absolute
values summing to 1 per prompt)
and `live_criteria_frac` [] (share of real criteria with std > tol);
`sa_mrpo` adds `saturation` [B, K].
"""
import importlib
import pkgutil

from focal.advantages.base import (Estimator, estimator_defaults, make_estimator,
                                   masked_mean_std, register_estimator, registered_estimators,
                                   rollout_has_verdict)

# Importing a module registers its estimators; a new estimator is one module here.
for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Estimator", "estimator_defaults", "make_estimator", "masked_mean_std",
           "register_estimator", "registered_estimators", "rollout_has_verdict"]
