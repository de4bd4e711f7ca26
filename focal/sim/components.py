"""Simulator configs (configs/sim/*.py) -> SimSpec, knobs, methods: the only place reading them.

A *method* is what a phase diagram compares: an aggregator name (its reward
feeds the scalar estimator `config.scalar_estimator`), a criterion-level
estimator name (`gdpo`, `dvao`, `sa_mrpo`, `gd2po`, which read the verdicts and
ignore the aggregator's reward; they run with `weighted_sum`), or a *variant*:
an entry of `config.variants`, `{label: {of: <aggregator or criterion
estimator>, <hparam>: value, ...}}`, which runs `of` with those values over its
block (e.g. Focal with `placement='advantage'`, GD²PO's `snr`). Hyper-parameters
come from the config's `aggregator.<name>` and `estimator.<name>` blocks, passed
explicitly, so the factories' own defaults never decide a simulated result.

A grid axis is a knob name (vmapped: all its values run as lanes of one
program), one of the `sim` fields STATIC_AXES (one program per value), or a
hyper-parameter `aggregator.<name>.<hparam>` / `estimator.<name>.<hparam>` of
the config's blocks: a lane too, unless the factory branches on its value
while tracing (then one program per value; `focal.sim.engine.lane_hparams_ok`).
A hyper-parameter axis applies to the methods that use that aggregator or
estimator (variants of it included, the axis overriding the variant's value);
the others run each distinct setting once.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping, Sequence

import ml_collections

from focal import aggregators
from focal.advantages import make_estimator, registered_estimators
from focal.sim.engine import GRPO_FIELDS, OPTIMIZER_FIELDS, SimSpec
from focal.sim.knobs import Knobs, check_knobs

CRITERION_ESTIMATORS = ("gdpo", "dvao", "sa_mrpo", "gd2po")
SPEC_FIELDS = ("population", "num_prompts", "num_heldout", "max_criteria", "num_types",
               "num_features", "group_size", "steps", "log_every")
# Sim fields a grid may vary: they leave the shapes of the logged metrics unchanged.
STATIC_AXES = ("group_size", "num_prompts", "num_types", "num_features")


def spec_block(fields) -> ml_collections.ConfigDict:
  """A config block of SimSpec's `fields` at their defaults (SimSpec takes the GRPO and
  optimizer ones from the real loop's GRPOSettings and make_optimizer)."""
  defaults = {f.name: f.default for f in dataclasses.fields(SimSpec)}
  return ml_collections.ConfigDict({f: defaults[f] for f in fields})


def variant(config, method: str) -> tuple[str, dict[str, Any]]:
  """(registered aggregator or criterion estimator, hyper-parameter overrides) of `method`."""
  variants = config.get("variants") or {}
  if method not in variants:
    return method, {}
  entry = variants[method].to_dict()
  base = entry.pop("of", None)
  if base not in set(aggregators.registered()) | set(CRITERION_ESTIMATORS):
    raise ValueError(f"config.variants.{method}.of={base!r} must name an aggregator or one of "
                     f"the criterion estimators {CRITERION_ESTIMATORS}")
  return base, entry


def method_names(config) -> tuple[str, ...]:
  """Validated `config.methods` (baselines included, each once, baselines first)."""
  known = (set(aggregators.registered()) | set(CRITERION_ESTIMATORS)
           | set(config.get("variants") or {}))
  names = tuple(dict.fromkeys(tuple(config.baselines) + tuple(config.methods)))
  bad = [m for m in names if m not in known]
  if bad:
    raise ValueError(f"config.methods/baselines: unknown {bad}; choose from {sorted(known)}")
  return names


def _block(config, group: str, name: str) -> tuple:
  block = getattr(config, group)
  if name not in block:
    raise ValueError(f"config.{group} has no block {name!r} with its hyper-parameters")
  return tuple(sorted(block[name].to_dict().items()))


def method_parts(config, method: str) -> tuple[str, str]:
  """(aggregator, estimator) names that `method` runs with."""
  method, _ = variant(config, method)
  if method in CRITERION_ESTIMATORS:
    return "weighted_sum", method
  return method, config.scalar_estimator


def hparam_axis(axis: str) -> tuple[str, str, str] | None:
  """(group, name, hparam) of an `aggregator.<name>.<hparam>` or `estimator.<name>.<hparam>`
  grid axis; None for any other axis."""
  parts = axis.split(".")
  if len(parts) == 3 and parts[0] in ("aggregator", "estimator"):
    return parts[0], parts[1], parts[2]
  return None


def method_hparams(config, method: str, cell: Mapping[str, Any]) -> dict[str, float]:
  """{"<group>.<hparam>": value} of the cell's hyper-parameter axes that `method` uses."""
  aggregator, estimator = method_parts(config, method)
  used = {"aggregator": aggregator, "estimator": estimator}
  out = {}
  for axis, value in cell.items():
    parsed = hparam_axis(axis)
    if parsed and used[parsed[0]] == parsed[1]:
      out[f"{parsed[0]}.{parsed[2]}"] = float(value)
  return out


def method_spec(config, method: str, static: Mapping[str, Any] | None = None,
                hparams: Mapping[str, float] | None = None) -> SimSpec:
  """The SimSpec of `method` with the config's `sim`, `grpo` and `optimizer` fields.

  `static` overrides `sim` fields (a static grid axis); `hparams`
  ({"<group>.<hparam>": value}) overrides the method's hyper-parameters as static values.
  """
  aggregator, estimator = method_parts(config, method)
  if estimator not in registered_estimators():
    raise ValueError(f"config.scalar_estimator={estimator!r} is not an advantage estimator")
  sim = {f: config.sim[f] for f in SPEC_FIELDS if f in config.sim}   # num_heldout: optional
  unknown = [k for k in (static or {}) if k not in STATIC_AXES]
  if unknown:
    raise ValueError(f"static grid axes {unknown} must be among {STATIC_AXES}")
  sim.update(static or {})
  blocks = {"aggregator": dict(_block(config, "aggregator", aggregator)),
            "estimator": dict(_block(config, "estimator", estimator))}
  base, overrides = variant(config, method)
  group = "estimator" if base in CRITERION_ESTIMATORS else "aggregator"
  unknown = sorted(set(overrides) - set(blocks[group]))
  if unknown:
    raise ValueError(f"config.variants.{method}: {unknown} are not hyper-parameters of "
                     f"{base!r}; it has {sorted(blocks[group])}")
  blocks[group].update(overrides)
  for key, value in (hparams or {}).items():
    group, _, name = key.partition(".")
    blocks[group][name] = value
  return SimSpec(**sim, aggregator=aggregator,
                 aggregator_hparams=tuple(sorted(blocks["aggregator"].items())),
                 estimator=estimator, estimator_hparams=tuple(sorted(blocks["estimator"].items())),
                 **{f: config.grpo[f] for f in GRPO_FIELDS},
                 **{f: config.optimizer[f] for f in OPTIMIZER_FIELDS})


def knob_values(config) -> dict[str, float]:
  """The config's knob block as a validated {field: float}."""
  values = {k: float(v) for k, v in config.knobs.to_dict().items()}
  check_knobs(values, config.sim.max_criteria, "config.knobs")
  return values


def _check_hparam_axis(config, axis: str, values: Sequence) -> None:
  group, name, hparam = hparam_axis(axis)
  block = getattr(config, group)
  if name not in block or hparam not in block[name]:
    have = sorted(block[name]) if name in block else sorted(block)
    raise ValueError(f"grid axis {axis!r}: config.{group} has no {name}.{hparam}; it has {have}")
  if isinstance(block[name][hparam], str):
    raise ValueError(f"grid axis {axis!r} is a string option; vary it with separate configs")
  make = aggregators.make if group == "aggregator" else make_estimator
  for value in values:  # each value checked by the factory itself, before any tracing
    make(name, **{**block[name].to_dict(), hparam: value})


def grid_cells(grid: Mapping[str, Sequence], config=None) -> list[dict]:
  """Every combination of the grid's axes ({axis: values}), first axis slowest.

  Hyper-parameter axes need `config` (their blocks and checks).
  """
  for axis, values in grid.items():
    if hparam_axis(axis) and config is not None:
      _check_hparam_axis(config, axis, values)
    elif axis not in Knobs._fields and axis not in STATIC_AXES:
      raise ValueError(f"grid axis {axis!r} is neither a knob {Knobs._fields}, one of the "
                       f"sim fields {STATIC_AXES}, nor a hyper-parameter "
                       "'aggregator.<name>.<hparam>' / 'estimator.<name>.<hparam>'")
    if not len(values):
      raise ValueError(f"grid axis {axis!r} has no values")
  axes = list(grid)
  return [dict(zip(axes, combo)) for combo in itertools.product(*(grid[a] for a in axes))]


def split_cell(cell: Mapping[str, Any]) -> tuple[dict, dict]:
  """(static sim overrides, knob overrides) of one grid cell."""
  static = {k: v for k, v in cell.items() if k in STATIC_AXES}
  knobs = {k: float(v) for k, v in cell.items() if k in Knobs._fields}
  return static, knobs
