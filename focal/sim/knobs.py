"""Rubric, judge and policy knobs: the continuous settings a simulation vmaps over.

A `Knobs` is a pytree of float32 arrays of one shape (scalars for one run,
[L] for L lanes of a vmapped grid). Everything that changes array shapes
(prompts, criteria, types, group size, steps) is static and lives in
`focal.sim.engine.SimSpec` instead.

Difficulty classes (shares of a prompt's real criteria, the rest contrastive):
  saturated: almost every response type passes it (pass probability
    `saturated_level` per type); no contrast unless a type breaks it.
  rare: passed by one specialist type only, whose initial probability is
    `rare_rate`: rare but reachable. The specialist is the slot's own type, or
    with probability `rare_sharing` its category's type, the same on every
    prompt (so that what is learned about it can transfer).
  dead: no type passes it: unreachable.
  contrastive: each type passes it or not, a share `contrast_rate` of types
    passing; the initial pass rate is moderate and varies across prompts.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np


class Knobs(NamedTuple):
  """Continuous knobs of a run (see the module docstring and configs/sim/base.py)."""
  saturated: Any        # share of criteria in the saturated class
  rare: Any             # share of rare-but-reachable criteria
  dead: Any             # share of unreachable criteria
  rare_rate: Any        # initial probability of each rare criterion's specialist type
  rare_sharing: Any     # probability that a rare criterion's specialist is its category's type
  saturated_level: Any  # pass probability of a saturated criterion for a generic type
  contrast_rate: Any    # share of generic types passing a contrastive criterion
  cooccurrence: Any     # 0: contrastive criteria pass on independent types; 1: on the same types
  conflict: Any         # strength of trade-offs between criteria through shared types
  category_skew: Any    # 0: classes independent of category; 1: category decides the class
  heavy_easy: Any       # probability that a saturated criterion carries the top weight
  type_sharing: Any     # share of a type's pass pattern common to prompts (via features)
  init_logit_std: Any   # std of the initial logits of the generic types
  policy_sharing: Any   # 0: tabular logits per prompt; 1: only a shared linear map of features
  policy_bias: Any      # 1: the shared map has a per-type offset (a constant feature); 0: none
  noise: Any            # judge flips a verdict with this probability
  invalid: Any          # judge returns no verdict with this probability
  learning_rate: Any    # AdamW learning rate of the policy logits


# Field -> (low, high) of its valid range, both inclusive.
RANGES = {
    "saturated": (0.0, 1.0), "rare": (0.0, 1.0), "dead": (0.0, 1.0),
    "rare_rate": (0.0, 0.5), "rare_sharing": (0.0, 1.0), "saturated_level": (0.0, 1.0),
    "contrast_rate": (0.01, 0.99),
    "cooccurrence": (0.0, 1.0),
    "conflict": (0.0, 1.0), "category_skew": (0.0, 1.0), "heavy_easy": (0.0, 1.0),
    "type_sharing": (0.0, 1.0), "init_logit_std": (0.0, 10.0), "policy_sharing": (0.0, 1.0),
    "policy_bias": (0.0, 1.0),
    "noise": (0.0, 0.5), "invalid": (0.0, 0.99), "learning_rate": (0.0, 10.0),
}


def check_knobs(values: Mapping[str, float], max_criteria: int, where: str = "knobs") -> None:
  """Raises ValueError naming the field and its valid range on a bad knob setting.

  Args:
    values: field -> float (every field of `Knobs`).
    max_criteria: K, bounds the total initial mass of the rare specialists.
    where: prefix of the error messages (a config path).
  """
  missing = [f for f in Knobs._fields if f not in values]
  unknown = [f for f in values if f not in Knobs._fields]
  if missing or unknown:
    raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}; "
                     f"expected exactly {list(Knobs._fields)}")
  for field, (lo, hi) in RANGES.items():
    v = float(values[field])
    if not lo <= v <= hi:
      raise ValueError(f"{where}.{field}={v} is outside [{lo}, {hi}]")
  shares = sum(float(values[f]) for f in ("saturated", "rare", "dead"))
  if shares > 1.0 + 1e-9:
    raise ValueError(f"{where}: saturated + rare + dead = {shares:.4g} must be <= 1")
  if float(values["rare_rate"]) * max_criteria >= 1.0:
    raise ValueError(f"{where}.rare_rate={values['rare_rate']}: with K={max_criteria} rare "
                     f"criteria their specialists would hold all the initial mass; "
                     f"rare_rate must be < 1/K = {1.0 / max_criteria:.4g}")


def make_knobs(values: Mapping[str, float], max_criteria: int, where: str = "knobs") -> Knobs:
  """One validated setting as float32 scalars."""
  check_knobs(values, max_criteria, where)
  return Knobs(**{f: jnp.float32(values[f]) for f in Knobs._fields})


def stack_knobs(settings: Sequence[Mapping[str, float]], max_criteria: int,
                where: str = "knobs") -> Knobs:
  """L validated settings as a `Knobs` of [L] float32 arrays (one lane each)."""
  if not settings:
    raise ValueError(f"{where}: no knob setting to stack")
  for i, s in enumerate(settings):
    check_knobs(s, max_criteria, f"{where}[{i}]")
  return Knobs(**{f: jnp.asarray(np.array([s[f] for s in settings], np.float32))
                  for f in Knobs._fields})
