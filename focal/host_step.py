"""One GRPO iteration with a host-side grader (an LLM judge, or rules on decoded text):

  rollouts = rollout_step(state, batch)             jitted, sharded
  scores, valid = grader(decode(rollouts))          host: HTTP requests, regexes
  state, metrics = learn_step(state, batch, rollouts, scores, valid)   jitted, sharded, donated

With `grader.overlap`, step t+1's rollouts are sampled on the device while the host grades
step t's, so an iteration costs about max(device time, judge time) instead of their sum. The
price: those rollouts come from the policy before step t's update (one update stale; logged
as `train/policy_lag`), and a resumed run samples its first step afresh, so it differs from an
uninterrupted overlapped run from there on. Without overlap a resumed run is exact.

A step whose share of invalid verdicts exceeds `max_invalid_frac` raises `TooManyInvalid`
before any update, with the state still as it was before the step, so the loop can save it.
"""
from __future__ import annotations

import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from focal import sharding


def errors_by_kind(stats: dict) -> dict[str, int]:
  """{kind: distinct requests} of a grader's stats (`errors/<kind>` keys, GradeStats.as_dict)."""
  prefix = "errors/"
  return {k[len(prefix):]: int(v) for k, v in sorted(stats.items()) if k.startswith(prefix)}


class TooManyInvalid(RuntimeError):
  """A step's judge returned too few valid verdicts to train on (or, with `what` set, to
  evaluate on)."""

  def __init__(self, step: int, frac: float, limit: float, stats: dict,
               what: str = "grader.judge.max_invalid_frac",
               then: str = "The run stopped before updating on them"):
    errors = ", ".join(f"{k}: {v}" for k, v in errors_by_kind(stats).items()) or "-"
    super().__init__(
        f"step {step}: {frac:.1%} of the judge's verdicts are invalid (limit {what}={limit:g}); "
        f"errors by kind (distinct requests): {errors}. {then}; fix the judge and rerun the "
        "same command to resume.")
    self.step, self.frac, self.errors = step, frac, errors_by_kind(stats)


class HostGradedStep:
  """`step(state, t) -> (state, metrics, [rows])` for a host grader (see the module docstring).

  Args:
    setup: the run's components.Setup (engine, grader, settings).
    mesh, state_sh, batch_sh: placement of the state and batches.
    batch_fn: t -> (placed PromptBatch, rows [B]) of step t.
    max_invalid_frac: the invalid-verdict share above which a step stops the run.
    overlap: sample step t+1 while step t is graded.
    limit_field: the config field that sets `max_invalid_frac`, as the error names it (the
      grader kind's, focal.graders.kinds.invalid_limit).
  """

  def __init__(self, setup, mesh, state_sh, batch_sh, batch_fn, max_invalid_frac: float,
               overlap: bool = False, limit_field: str = "grader.judge.max_invalid_frac"):
    engine, self.grader = setup.engine, setup.grader
    self.group = setup.settings.group_size
    self.mesh, self.batch_fn = mesh, batch_fn
    self.max_invalid_frac, self.overlap = max_invalid_frac, overlap
    self.limit_field = limit_field
    rows = sharding.batch_dim_sharding(mesh)
    rollout_sh = sharding.rollout_shardings(mesh)
    # The state goes in and out of learn_step only, so a stopped step leaves it intact.
    self._rollout = jax.jit(lambda state, batch: _rng_and_rollouts(engine, state, batch),
                            in_shardings=(state_sh, batch_sh),
                            out_shardings=(sharding.replicated(mesh), rollout_sh))
    self._learn = sharding.shard_learn_step(engine.learn_step, mesh, state_sh, batch_sh)
    self._rows = rows
    self._pending = None  # (t, batch, rows, rollouts) sampled ahead under overlap

  def programs(self) -> dict:
    """The jitted programs of a step, by name (focal.plan compiles exactly these)."""
    return {"rollout": self._rollout, "learn": self._learn}

  def _sample(self, state, t):
    batch, idx = self.batch_fn(t)
    rng, rollouts = self._rollout(state, batch)
    return state.replace(rng=rng), batch, idx, rollouts

  def __call__(self, state, t: int, last: bool = False):
    if self._pending is not None and self._pending[0] == t:
      _, batch, idx, rollouts = self._pending
      lag = 1
    else:
      state, batch, idx, rollouts = self._sample(state, t)
      lag = 0
    self._pending = None
    if self.overlap and not last:  # dispatched now; runs on the device while the host grades
      state, *ahead = self._sample(state, t + 1)
      self._pending = (t + 1, *ahead)
    start = time.monotonic()
    scores, valid, stats = self._grade(idx, rollouts)
    frac = float(stats.get("invalid_frac", 0.0))
    if frac > self.max_invalid_frac:
      self._pending = None
      raise TooManyInvalid(t, frac, self.max_invalid_frac, stats, what=self.limit_field)
    state, metrics = self._learn(state, batch, rollouts, *self._place(scores, valid))
    metrics = dict(metrics)
    metrics["policy_lag"] = float(lag)
    metrics["judge_seconds"] = time.monotonic() - start
    for key in ("requests", "cache_hits", "retries", "invalid", "replaced_chars"):
      if key in stats:
        metrics[f"judge_{key}"] = float(stats[key])
    return state, metrics, [idx]

  def _grade(self, idx, rollouts):
    """This process's rows of the rollouts, graded; [n, G, K] host arrays."""
    tokens, mask = (np.asarray(x) for x in _local(rollouts, self.mesh))
    mine = idx[_local_rows(self._rows, len(idx))]
    return self.grader.score("train", mine, tokens, mask, self.group)

  def _place(self, scores, valid):
    """Host [n, G, K] verdicts -> global [N, K] arrays sharded like the rollouts."""
    n = scores.shape[0] * scores.shape[1]
    flat = (scores.reshape(n, -1), valid.reshape(n, -1))
    if jax.process_count() == 1:
      return tuple(jax.device_put(x, self._rows) for x in flat)
    return tuple(multihost_utils.host_local_array_to_global_array(
        x, self.mesh, P(sharding.BATCH_AXES)) for x in flat)


def _rng_and_rollouts(engine, state, batch):
  state, rollouts = engine.rollout_step(state, batch)
  return state.rng, rollouts


def _local(tree, mesh):
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.global_array_to_host_local_array(tree, mesh, P(sharding.BATCH_AXES))


def _local_rows(rows_sharding, batch_size: int) -> slice:
  if jax.process_count() == 1:
    return slice(0, batch_size)
  from focal import distributed
  return distributed.process_rows(rows_sharding, batch_size)
