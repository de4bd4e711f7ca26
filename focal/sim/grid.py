"""Runs every method of a config over a grid of cells x seeds, as few compiled programs as possible.

Per method and per value of the static axes there is one compiled program; its
lanes are (knob cell, seed) pairs, run in calls of exactly `lanes_per_call`
lanes (the last call is padded by repeating a lane), so the lane count, and
with it the compiled program, never changes. Results come back as numpy
arrays [cells, seeds, logged steps, ...] per method.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from focal.sim import components
from focal.sim.engine import run_lanes
from focal.sim.knobs import stack_knobs
from focal.sim.population import make_population
from focal.sim.world import CLASS_NAMES


@dataclasses.dataclass
class GridResult:
  """Trajectories of every (method, cell, seed).

  eval[method][key]: [cells, seeds, T + 1, ...] expected metrics at `steps`.
  train[method][key]: [cells, seeds, T, ...] diagnostics at steps[1:].
  """
  cells: list[dict]
  methods: tuple[str, ...]
  seeds: np.ndarray
  steps: np.ndarray
  category_names: tuple[str, ...]
  class_names: tuple[str, ...]
  eval: dict[str, dict[str, np.ndarray]]
  train: dict[str, dict[str, np.ndarray]]


def _static_groups(cells: list[dict]) -> dict[tuple, list[int]]:
  """Cell indices by their static (sim field) values, in first-seen order."""
  groups: dict[tuple, list[int]] = {}
  for i, cell in enumerate(cells):
    static, _ = components.split_cell(cell)
    groups.setdefault(tuple(sorted(static.items())), []).append(i)
  return groups


def _run_padded(spec, seeds: np.ndarray, knob_rows: list[dict], lanes_per_call: int, bar):
  """Runs len(seeds) lanes in equal calls; returns numpy outputs with a leading lane axis."""
  n = len(seeds)
  chunks = []
  for start in range(0, n, lanes_per_call):
    idx = np.arange(start, start + lanes_per_call).clip(max=n - 1)
    knobs = stack_knobs([knob_rows[i] for i in idx], spec.max_criteria)
    out = jax.device_get(run_lanes(spec, seeds[idx], knobs))
    keep = min(lanes_per_call, n - start)
    chunks.append(jax.tree.map(lambda a: np.asarray(a)[:keep], out))
    bar.update(1)
  return jax.tree.map(lambda *a: np.concatenate(a), *chunks)


def run_grid(config, grid: dict[str, Any] | None = None, progress: bool = True) -> GridResult:
  """Runs `config`'s methods over the cells of `grid` ({axis: values}; None: one cell).

  Seeds are config.seed .. config.seed + config.num_seeds - 1 in every cell.
  """
  methods = components.method_names(config)
  base_knobs = components.knob_values(config)
  cells = components.grid_cells(grid or {})
  seeds = config.seed + np.arange(config.num_seeds, dtype=np.int64)
  if config.num_seeds < 1 or seeds[0] < 0 or seeds[-1] >= 2 ** 32:
    raise ValueError(f"config.seed={config.seed}, num_seeds={config.num_seeds}: seeds must be "
                     "in [0, 2^32) and num_seeds >= 1")
  groups = _static_groups(cells)
  lanes_per_call = int(config.lanes_per_call)
  if lanes_per_call < 1:
    raise ValueError(f"config.lanes_per_call={lanes_per_call} must be >= 1")
  calls = sum(-(-len(ix) * len(seeds) // lanes_per_call) for ix in groups.values())
  eval_out = {m: {} for m in methods}
  train_out = {m: {} for m in methods}
  with tqdm(total=calls * len(methods), desc="simulate", disable=not progress) as bar:
    for static_key, cell_ix in groups.items():
      knob_rows = [{**base_knobs, **components.split_cell(cells[i])[1]}
                   for i in cell_ix for _ in seeds]
      lane_seeds = np.tile(seeds, len(cell_ix)).astype(np.uint32)
      for method in methods:
        spec = components.method_spec(config, method, dict(static_key))
        out = _run_padded(spec, lane_seeds, knob_rows, lanes_per_call, bar)
        for part, dest in (("eval", eval_out[method]), ("train", train_out[method])):
          for key, arr in out[part].items():
            arr = arr.reshape(len(cell_ix), len(seeds), *arr.shape[1:])
            full = dest.setdefault(key, np.zeros((len(cells),) + arr.shape[1:], arr.dtype))
            full[cell_ix] = arr
  steps = np.arange(0, config.sim.steps + 1, config.sim.log_every)
  population = make_population(config.sim.population)
  return GridResult(cells=cells, methods=methods, seeds=seeds, steps=steps,
                    category_names=population.category_names, class_names=CLASS_NAMES,
                    eval=eval_out, train=train_out)
