"""Runs every method of a config over a grid of cells x seeds, as few compiled programs as possible.

Per method and per value of the static axes there is one compiled program; its
lanes are (setting, seed) pairs, a setting being a cell's knobs and its lane
hyper-parameters (a method runs each distinct setting once: a hyper-parameter
axis of another method does not multiply its work). Lanes run in calls of
exactly `lanes_per_call` (the last call is padded by repeating a lane), so the
lane count, and with it the compiled program, never changes. Results come back
as numpy arrays [cells, seeds, logged steps, ...] per method.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from focal.sim import components
from focal.sim.engine import lane_hparams_ok, run_lanes
from focal.sim.knobs import stack_knobs
from focal.sim.population import make_population
from focal.sim.world import CLASS_NAMES


@dataclasses.dataclass
class GridResult:
  """Trajectories of every (method, cell, seed).

  eval[method][key]: [cells, seeds, T + 1, ...] expected metrics at `steps`.
  train[method][key]: [cells, seeds, T, ...] diagnostics at steps[1:].
  heldout[method][key]: as eval, on the held-out prompts ({} without them).
  """
  cells: list[dict]
  methods: tuple[str, ...]
  seeds: np.ndarray
  steps: np.ndarray
  category_names: tuple[str, ...]
  class_names: tuple[str, ...]
  eval: dict[str, dict[str, np.ndarray]]
  train: dict[str, dict[str, np.ndarray]]
  heldout: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

  def part(self, name: str) -> dict[str, dict[str, np.ndarray]]:
    """The metrics of one part: 'eval' (training prompts), 'heldout' or 'train'."""
    return {"eval": self.eval, "heldout": self.heldout, "train": self.train}[name]


def _programs(config, method: str, cells: list[dict]) -> list[tuple[Any, list[str], list[int]]]:
  """[(spec, lane hyper-parameter keys, cell indices)]: one compiled program each.

  A hyper-parameter axis is a lane unless its aggregator or estimator branches on
  it under some program's static values; then it becomes static (one program per
  value) and the programs are regrouped.
  """
  hparams = [components.method_hparams(config, method, cell) for cell in cells]
  all_keys = sorted({k for hp in hparams for k in hp})
  static_keys: set[str] = set()
  while True:
    groups: dict[tuple, list[int]] = {}
    for i, cell in enumerate(cells):
      static, _ = components.split_cell(cell)
      fixed = {k: v for k, v in hparams[i].items() if k in static_keys}
      groups.setdefault((tuple(sorted(static.items())), tuple(sorted(fixed.items()))),
                        []).append(i)
    lane_keys = [k for k in all_keys if k not in static_keys]
    specs = {key: components.method_spec(config, method, dict(key[0]), dict(key[1]))
             for key in groups}
    bad = {k for spec in specs.values() if lane_keys
           for k, ok in lane_hparams_ok(spec, lane_keys).items() if not ok}
    if not bad:
      return [(specs[key], lane_keys, ix) for key, ix in groups.items()]
    static_keys |= bad


def _run_padded(spec, seeds: np.ndarray, knob_rows: list[dict], hparam_rows: list[dict],
                lanes_per_call: int, bar):
  """Runs len(seeds) lanes in equal calls; returns numpy outputs with a leading lane axis."""
  n = len(seeds)
  chunks = []
  for start in range(0, n, lanes_per_call):
    idx = np.arange(start, start + lanes_per_call).clip(max=n - 1)
    knobs = stack_knobs([knob_rows[i] for i in idx], spec.max_criteria)
    hparams = {k: np.array([hparam_rows[i][k] for i in idx], np.float32)
               for k in hparam_rows[0]}
    out = jax.device_get(run_lanes(spec, seeds[idx], knobs, hparams))
    keep = min(lanes_per_call, n - start)
    chunks.append(jax.tree.map(lambda a: np.asarray(a)[:keep], out))
    bar.update(1)
  return jax.tree.map(lambda *a: np.concatenate(a), *chunks)


def _lane_settings(config, method, lane_keys, cell_ix, cells, base_knobs):
  """([(knobs, lane hyper-parameters)] distinct settings, index of each cell's setting)."""
  settings, which = {}, []
  for i in cell_ix:
    knobs = {**base_knobs, **components.split_cell(cells[i])[1]}
    hp = components.method_hparams(config, method, cells[i])
    lane = {k: hp[k] for k in lane_keys}
    key = (tuple(sorted(knobs.items())), tuple(sorted(lane.items())))
    which.append(settings.setdefault(key, (len(settings), (knobs, lane)))[0])
  return [setting for _, setting in settings.values()], which


def _run_settings(spec, unique, seeds, lanes_per_call, bar):
  """{part: {key: [len(unique), seeds, ...]}}: every setting over every seed."""
  knob_rows = [knobs for knobs, _ in unique for _ in seeds]
  hparam_rows = [lane for _, lane in unique for _ in seeds]
  lane_seeds = np.tile(seeds, len(unique)).astype(np.uint32)
  out = _run_padded(spec, lane_seeds, knob_rows, hparam_rows, lanes_per_call, bar)
  return {part: {key: arr.reshape(len(unique), len(seeds), *arr.shape[1:])
                 for key, arr in metrics.items()} for part, metrics in out.items()}


def run_grid(config, grid: dict[str, Any] | None = None, progress: bool = True) -> GridResult:
  """Runs `config`'s methods over the cells of `grid` ({axis: values}; None: one cell).

  Seeds are config.seed .. config.seed + config.num_seeds - 1 in every cell.
  """
  methods = components.method_names(config)
  base_knobs = components.knob_values(config)
  cells = components.grid_cells(grid or {}, config)
  seeds = config.seed + np.arange(config.num_seeds, dtype=np.int64)
  if config.num_seeds < 1 or seeds[0] < 0 or seeds[-1] >= 2 ** 32:
    raise ValueError(f"config.seed={config.seed}, num_seeds={config.num_seeds}: seeds must be "
                     "in [0, 2^32) and num_seeds >= 1")
  if int(config.lanes_per_call) < 1:
    raise ValueError(f"config.lanes_per_call={config.lanes_per_call} must be >= 1")
  lanes_per_call = int(config.lanes_per_call)
  work = []  # (method, spec, cell indices, distinct settings, each cell's setting)
  for method in methods:
    for spec, lane_keys, cell_ix in _programs(config, method, cells):
      unique, which = _lane_settings(config, method, lane_keys, cell_ix, cells, base_knobs)
      work.append((method, spec, cell_ix, unique, which))
  calls = sum(-(-len(unique) * len(seeds) // lanes_per_call) for *_, unique, _ in work)
  parts = {part: {m: {} for m in methods} for part in ("eval", "train", "heldout")}
  with tqdm(total=calls, desc="simulate", disable=not progress) as bar:
    for method, spec, cell_ix, unique, which in work:
      out = _run_settings(spec, unique, seeds, lanes_per_call, bar)
      for part, metrics in out.items():
        dest = parts[part][method]
        for key, arr in metrics.items():
          full = dest.setdefault(key, np.zeros((len(cells),) + arr.shape[1:], arr.dtype))
          full[cell_ix] = arr[which]
  steps = np.arange(0, config.sim.steps + 1, config.sim.log_every)
  population = make_population(config.sim.population)
  return GridResult(cells=cells, methods=methods, seeds=seeds, steps=steps,
                    category_names=population.category_names, class_names=CLASS_NAMES,
                    eval=parts["eval"], train=parts["train"],
                    heldout={m: v for m, v in parts["heldout"].items() if v})
