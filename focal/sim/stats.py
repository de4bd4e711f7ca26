"""Host-side statistics of simulated runs: paired gains, steps to targets, confidence intervals.

Every method runs the same seeds, and a seed fixes the world (rubrics, types,
initial policy), so methods are compared seed by seed: a gain is the mean over
seeds of (method - baseline) with a 95% Student-t interval. Curves are [S, T]
(seeds x logged steps, step 0 first).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats as scipy_stats


class Interval(NamedTuple):
  """Mean with a 95% confidence interval over n values."""
  mean: float
  lo: float
  hi: float
  n: int

  @property
  def excludes_zero(self) -> bool:
    return self.n > 1 and (self.lo > 0.0 or self.hi < 0.0)

  def format(self, digits: int = 2) -> str:
    if self.n == 0 or math.isnan(self.mean):
      return "n/a"
    return f"{self.mean:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"


def mean_interval(values, level: float = 0.95) -> Interval:
  """Student-t interval of the mean of the finite entries of `values`."""
  x = np.asarray(values, np.float64)
  x = x[np.isfinite(x)]
  n = int(x.size)
  if n == 0:
    return Interval(float("nan"), float("nan"), float("nan"), 0)
  mean = float(np.mean(x))
  if n == 1:
    return Interval(mean, float("nan"), float("nan"), 1)
  half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 1) * np.std(x, ddof=1) / math.sqrt(n))
  return Interval(mean, mean - half, mean + half, n)


def paired_gain(method, baseline) -> Interval:
  """Mean over seeds of method - baseline (both [S]), with its 95% interval."""
  return mean_interval(np.asarray(method, np.float64) - np.asarray(baseline, np.float64))


def first_crossing(curves, steps, targets):
  """[S] first logged step at which curves [S, T] reach targets [S] (>=); inf if never.

  NaN targets give NaN.
  """
  curves = np.asarray(curves, np.float64)
  targets = np.asarray(targets, np.float64)
  hit = curves >= targets[:, None]
  first = np.where(hit.any(1), np.asarray(steps, np.float64)[np.argmax(hit, 1)], np.inf)
  return np.where(np.isnan(targets), np.nan, first)


def plateau_targets(reference, share: float, min_gain: float = 1e-6):
  """[S] targets start + share (final - start) of a reference's curves [S, T].

  NaN where the reference gained less than `min_gain` (its plateau is its start:
  there is no progress to be faster at).
  """
  reference = np.asarray(reference, np.float64)
  start, final = reference[:, 0], reference[:, -1]
  gain = final - start
  return np.where(gain > min_gain, start + share * gain, np.nan)


def speedup(steps_reference, steps_method, horizon: float) -> Interval:
  """Geometric-mean ratio steps_reference / steps_method with a 95% interval.

  Computed on log ratios over seeds where both are defined. A method that never
  reaches the target counts as reaching it at `horizon` (one log interval past
  the last step): a bound in the reference's favour, so a reported speed-up
  is never inflated by censoring.
  """
  ref = np.asarray(steps_reference, np.float64)
  meth = np.minimum(np.asarray(steps_method, np.float64), horizon)
  ok = np.isfinite(ref) & np.isfinite(meth) & (ref > 0) & (meth > 0)
  iv = mean_interval(np.log(ref[ok] / meth[ok]))
  if iv.n == 0:
    return iv
  return Interval(math.exp(iv.mean), math.exp(iv.lo) if iv.n > 1 else float("nan"),
                  math.exp(iv.hi) if iv.n > 1 else float("nan"), iv.n)


def reached_share(steps) -> float:
  """Share of the defined entries of `steps` that are finite (the target was reached)."""
  s = np.asarray(steps, np.float64)
  defined = ~np.isnan(s)
  return float(np.mean(np.isfinite(s[defined]))) if defined.any() else float("nan")
