"""The non-finite guard of a GRPO iteration: detected inside the jitted step, acted on by the host.

Inside the step, `nonfinite_code` checks, in this order, the quantities a
non-finite number flows through: the aggregator's rewards, the advantages, the
loss and the gradients of every mini-batch update, and the parameters after the
step. The step reports the first one that is not finite as the scalar metric
`nonfinite` (0 when every one is finite, else 1 + its index in `QUANTITIES`), so
the check costs a few reductions and no host transfer of its own.

`GRPOSettings.nonfinite` says what the step does about it:
  "stop" (default)  the step is left exactly as computed; non-finite parameters
                    then make every later step non-finite too, so the flag stays
                    up until the host next reads the metrics, and `check_finite`
                    raises there, before anything is checkpointed;
  "skip_update"     the step keeps the parameters, optimizer state and
                    aggregator state it started from (it still advances `step`
                    and the RNG, so the next step draws new rollouts), and
                    `check_finite` warns and lets training go on.
"""
from __future__ import annotations

import math
import warnings
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

QUANTITIES = ("reward", "advantage", "loss", "grad", "params")
MODES = ("stop", "skip_update")
METRIC = "nonfinite"


class NonFiniteError(FloatingPointError):
  """A training step produced a non-finite number (see the message for the step and what)."""


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"nonfinite must be one of {MODES}, got {mode!r}")
  return mode


def all_finite(tree):
  """[] bool: every floating-point leaf of `tree` is finite (integer and key leaves pass)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  if not leaves:
    return jnp.asarray(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def nonfinite_code(rewards, advantages, losses, grad_norms, params):
  """[] float32: 0 when all finite, else 1 + the index in QUANTITIES of the first that is not.

  `losses` and `grad_norms` hold one value per mini-batch update of the step; a
  gradient with a non-finite entry has a non-finite global norm.
  """
  finite = jnp.stack([all_finite(rewards), all_finite(advantages), all_finite(losses),
                      all_finite(grad_norms), all_finite(params)])
  first = jnp.argmin(finite)  # the first False
  return jnp.where(jnp.all(finite), 0, first + 1).astype(jnp.float32)


def keep_if(bad, before, after):
  """`before` where the scalar `bad` is set, else `after` (leaf by leaf, inside jit)."""
  return jax.tree.map(lambda b, a: jnp.where(bad, b, a), before, after)


def check_finite(metrics: Mapping, step: int, mode: str = "stop") -> bool:
  """Host side: True when step `step`'s metrics report a non-finite step.

  `metrics` are the step's metrics; their scalars are fetched here in one
  transfer (nothing to fetch for metrics already on the host). Raises
  `NonFiniteError` naming the step, the first non-finite quantity of the step
  and its non-finite scalar metrics when `mode` is "stop"; warns and returns
  True when it is "skip_update".
  """
  check_mode(mode)
  scalars = jax.device_get({k: v for k, v in metrics.items() if np.ndim(v) == 0})  # one fetch
  code = int(scalars.pop(METRIC, 0))
  bad_metrics = [k for k, v in scalars.items() if not math.isfinite(float(v))]
  if code == 0 and not bad_metrics:
    return False
  what = QUANTITIES[code - 1] if code else f"metric {bad_metrics[0]}"
  message = (f"step {step}: non-finite {what} (quantities checked in the order "
             f"{', '.join(QUANTITIES)}); non-finite metrics: {', '.join(bad_metrics) or 'none'}")
  if mode == "stop":
    raise NonFiniteError(message + ". Nothing of this step was checkpointed; lower the learning "
                         "rate, check the graders' scores, or set grpo.nonfinite='skip_update'")
  outcome = ("the update was skipped" if code else
             "the update itself was finite and was applied")
  warnings.warn(f"{message}; {outcome} (grpo.nonfinite='skip_update')", RuntimeWarning,
                stacklevel=2)
  return True
