"""Scalar estimators (METHODS §1): standardise the aggregator's reward within each group."""
from __future__ import annotations

import jax.numpy as jnp

from focal.advantages.base import (Estimator, check_common, common_metrics, masked_mean_std,
                                   register_estimator, rollout_has_verdict)
from focal.rubric import RubricBatch



def _scalar(rewards, valid, rubric, ddof, zero_std_tol):
  """Group statistics of R over rollouts with a verdict.

  Returns (has_verdict [B, G], centred [B, G], group_std [B, 1], zero_group [B]).
  """
  has = rollout_has_verdict(valid, rubric)
  mean, std = masked_mean_std(rewards, has, -1, ddof)
  zero = std[:, 0] <= zero_std_tol
  centred = jnp.where(has & ~zero[:, None], rewards - mean, 0.0)
  return has, centred, std, zero


@register_estimator("grpo")
def grpo(eps: float = 1e-6, ddof: int = 0, zero_std_tol: float = 1e-6) -> Estimator:
  """A_i = (R_i - mean_g R) / (std_g R + eps); 0 for a zero-variance group.

  Args:
    eps: added to the std in the denominator.
    ddof: 0 (population std, the default) or 1 (sample std) over the group.
    zero_std_tol: a group (or criterion) whose std is at or below this carries no signal.
  """
  check_common(eps, zero_std_tol)
  if ddof not in (0, 1):
    raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")

  def estimate(rewards, scores, valid, rubric: RubricBatch):
    del scores
    has, centred, std, zero = _scalar(rewards, valid, rubric, ddof, zero_std_tol)
    adv = centred / (std + eps)
    return adv, {**common_metrics(adv, zero, has), "reward_group_std": jnp.mean(std)}

  return estimate


@register_estimator("dr_grpo")
def dr_grpo(zero_std_tol: float = 1e-6) -> Estimator:
  """Dr. GRPO: A_i = R_i - mean_g R (no std scaling).

  Args:
    zero_std_tol: a group (or criterion) whose std is at or below this carries no signal.
  """
  check_common(0.0, zero_std_tol)

  def estimate(rewards, scores, valid, rubric: RubricBatch):
    del scores
    has, adv, std, zero = _scalar(rewards, valid, rubric, 0, zero_std_tol)
    return adv, {**common_metrics(adv, zero, has), "reward_group_std": jnp.mean(std)}

  return estimate


@register_estimator("batch_std")
def batch_std(eps: float = 1e-6, zero_std_tol: float = 1e-6) -> Estimator:
  """A_i = (R_i - mean_g R) / (std of R over the batch's rollouts + eps).

  Args:
    eps: added to the std in the denominator.
    zero_std_tol: a group (or criterion) whose std is at or below this carries no signal.
  """
  check_common(eps, zero_std_tol)

  def estimate(rewards, scores, valid, rubric: RubricBatch):
    del scores
    has, centred, std, zero = _scalar(rewards, valid, rubric, 0, zero_std_tol)
    _, std_batch = masked_mean_std(rewards, has, (0, 1))
    adv = centred / (std_batch + eps)
    return adv, {**common_metrics(adv, zero, has), "reward_group_std": jnp.mean(std)}

  return estimate


