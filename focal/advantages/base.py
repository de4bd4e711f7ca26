"""The advantage-estimator registry and the group statistics every estimator shares."""
from __future__ import annotations

import functools
from typing import Callable

import jax.numpy as jnp

from focal.aggregators.base import check_range, present, usable_scores
from focal.registry import Registry
from focal.rubric import RubricBatch, safe_div

Estimator = Callable[..., tuple]

_ESTIMATORS = Registry("advantage estimator")
registered_estimators = _ESTIMATORS.names
estimator_defaults = _ESTIMATORS.defaults  # name -> {hyper-parameter: default}


def register_estimator(name: str):
  """Decorator registering an estimator factory under `name`.

  The registered factory builds estimators that see 0 for every score without a
  usable verdict and for the reward of every rollout without one, before any
  arithmetic: a masked-out NaN or inf never reaches an advantage (0 x NaN = NaN).
  """
  def wrap(factory):
    @functools.wraps(factory)  # keeps the signature the config block is read from
    def guarded(*args, **kwargs) -> Estimator:
      return _on_usable_inputs(factory(*args, **kwargs))
    return _ESTIMATORS.register(name)(guarded)
  return wrap


def _on_usable_inputs(estimate):
  @functools.wraps(estimate)
  def guarded_estimate(rewards, scores, valid, rubric: RubricBatch):
    rewards = jnp.where(rollout_has_verdict(valid, rubric), rewards,
                        jnp.zeros((), jnp.result_type(rewards)))
    return estimate(rewards, usable_scores(scores, valid, rubric), valid, rubric)
  return guarded_estimate


def make_estimator(name: str, **hparams) -> Estimator:
  """Builds the estimator registered as `name` with the given hyper-parameters.

  Raises:
    ValueError: unknown name (lists the registered ones), unknown or
      out-of-range hyper-parameters.
  """
  return _ESTIMATORS.make(name, **hparams)


# ----------------------------------------------------------------------------
# Shared statistics.
# ----------------------------------------------------------------------------


def masked_mean_std(x, mask, axis, ddof: float = 0.0):
  """Mean and std of `x` over `axis` counting only `mask` entries (keepdims).

  The std is 0 where fewer than ddof + 1 entries count (no spread to measure).
  """
  m = mask.astype(x.dtype)
  n = jnp.sum(m, axis, keepdims=True)
  mean = safe_div(jnp.sum(x * m, axis, keepdims=True), n)
  sq = jnp.sum(m * jnp.square(x - mean), axis, keepdims=True)
  var = safe_div(sq, jnp.maximum(n - ddof, 0.0))
  return mean, jnp.sqrt(jnp.maximum(var, 0.0))


def rollout_has_verdict(valid, rubric: RubricBatch):
  """[B, G] bool: at least one real criterion has a valid verdict."""
  return jnp.any(present(valid, rubric), -1)


def common_metrics(adv, zero_group, has_verdict) -> dict:
  zf = zero_group.astype(jnp.float32)
  return {
      "advantage_std": jnp.std(adv),
      "zero_variance_groups": jnp.mean(zf),
      "zero_variance_group_count": jnp.sum(zf),
      "rollouts_without_valid": jnp.sum(~has_verdict).astype(jnp.float32),
  }


def check_common(eps, zero_std_tol):
  check_range("eps", eps, 0.0)
  check_range("zero_std_tol", zero_std_tol, 0.0)


