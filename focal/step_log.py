"""One training step's device metrics flattened into the stable `train/...` row keys.

Scalars become `train/<key>`; the per-prompt [B, K] arrays become one mean per
named criterion slot: `train/pass_rate/<task>/<criterion>`, `train/weight/...` and
(for POW3R-family aggregators) `train/factor/...`.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

# Per-prompt [B, K] metric -> row-key prefix.
PER_CRITERION = (("prompt_pass_rate", "pass_rate"), ("prompt_weight", "weight"),
                 ("prompt_factor", "factor"))


def named_means(values: np.ndarray, names: np.ndarray) -> dict:
  """Mean of [B, K] `values` per distinct slot name ('' slots are padding)."""
  out: dict[str, list] = {}
  for v, n in zip(values.ravel(), names.ravel()):
    if n:
      out.setdefault(n, []).append(float(v))
  return {n: float(np.mean(v)) for n, v in sorted(out.items())}


def train_row(metrics: dict, names: np.ndarray, step: int) -> dict:
  """The `train/...` row of one step: `names` [B, K] names the batch's criterion slots."""
  m = jax.device_get(metrics)
  row: dict[str, Any] = {"step": step}
  for key, value in m.items():
    value = np.asarray(value)
    if value.ndim == 0:
      row[f"train/{key}"] = float(value)
  for key, prefix in PER_CRITERION:
    if key in m:
      for name, value in named_means(np.asarray(m[key]), names).items():
        row[f"train/{prefix}/{name}"] = value
  return row
