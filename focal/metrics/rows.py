"""One training step's device metrics flattened into the stable `train/...` row keys.

Scalars become `train/<key>`; the per-prompt [B, K] arrays become one mean per
named criterion slot: `train/pass_rate/<task>/<criterion>`, `train/weight/...` and
(for POW3R-family aggregators) `train/factor/...`. The step's response-token count is no
row key of its own: `TokenCounter` sums it into `train/tokens_seen`.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

# The device metric holding a step's response-token count (summed by TokenCounter).
RESPONSE_TOKENS = "response_tokens"
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
    if value.ndim == 0 and key != RESPONSE_TOKENS:
      row[f"train/{key}"] = float(value)
  for key, prefix in PER_CRITERION:
    if key in m:
      for name, value in named_means(np.asarray(m[key]), names).items():
        row[f"train/{prefix}/{name}"] = value
  return row


class TokenCounter:
  """Response tokens trained on since step 0 (`train/tokens_seen`), across restarts.

  `add` keeps each step's count as the device scalar it is, so counting never waits for a
  step; `total` fetches the counts kept so far (on logged and checkpointed steps only, whose
  metrics are fetched anyway) and sums them exactly, as Python ints.
  """

  def __init__(self, before: int = 0):
    self.before = int(before)  # tokens of the run's earlier segments (checkpoint meta)
    self._pending: list = []

  def add(self, metrics: dict) -> None:
    self._pending.append(metrics[RESPONSE_TOKENS])

  def total(self) -> int:
    if self._pending:
      self.before += sum(int(n) for n in jax.device_get(self._pending))
      self._pending = []
    return self.before
