"""Matmul FLOPs of a program, counted from its jaxpr with every loop's trip count.

XLA's `cost_analysis()` counts the body of a loop once, whatever its trip count (checked: a
10-step `fori_loop` of a matmul reports one matmul's FLOPs). A GRPO step is loops inside loops
(micro-batches, mini-batches, scanned layers, decode steps), so its cost analysis is a per-
iteration figure. The jaxpr knows the trip counts of its scans; a `while` (the sampler's decode
loops, which stop once every row has ended) gets `while_trips`, the steps it runs at most.
`count(jaxpr, ...)` returns (FLOPs with trip counts, FLOPs with every body once): the second
is what XLA's figures correspond to, so their ratio scales XLA's bytes accessed the same way.
"""
from __future__ import annotations

import math

import jax
from jax.extend import core as jex_core


def dot_flops(eqn) -> float:
  """2 x batch x free(lhs) x free(rhs) x contracted, from a dot_general's operand shapes."""
  (lhs_contract, rhs_contract), (lhs_batch, _) = eqn.params["dimension_numbers"]
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  contracted = math.prod(lhs[i] for i in lhs_contract)
  batch = math.prod(lhs[i] for i in lhs_batch)
  lhs_free = math.prod(d for i, d in enumerate(lhs) if i not in (*lhs_contract, *lhs_batch))
  rhs_free = math.prod(d for i, d in enumerate(rhs)
                       if i not in (*rhs_contract, *eqn.params["dimension_numbers"][1][1]))
  return 2.0 * batch * lhs_free * rhs_free * contracted


def _subjaxprs(eqn):
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jex_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jex_core.Jaxpr):
        yield item


def count(jaxpr, while_trips: float = 1.0) -> tuple[float, float]:
  """(FLOPs with trip counts, FLOPs counting each loop body once) of `jaxpr`'s matmuls."""
  if isinstance(jaxpr, jex_core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  total = once = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      f = dot_flops(eqn)
      total, once = total + f, once + f
      continue
    if name == "pallas_call":  # a kernel's own estimate, when it gives one
      estimate = eqn.params.get("cost_estimate")
      f = float(getattr(estimate, "flops", 0) or 0)
      total, once = total + f, once + f
      continue
    parts = [count(sub, while_trips) for sub in _subjaxprs(eqn)]
    if not parts:
      continue
    if name == "cond":  # one branch runs: the costliest
      t, o = max(p[0] for p in parts), max(p[1] for p in parts)
    else:
      t, o = sum(p[0] for p in parts), sum(p[1] for p in parts)
    trips = eqn.params["length"] if name == "scan" else while_trips if name == "while" else 1
    total, once = total + trips * t, once + o
  return total, once


def count_whiles(jaxpr) -> int:
  """`while` loops in `jaxpr` (each written once, wherever it is nested)."""
  if isinstance(jaxpr, jex_core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  n = 0
  for eqn in jaxpr.eqns:
    n += eqn.primitive.name == "while"
    for sub in _subjaxprs(eqn):
      n += count_whiles(sub)
  # A while's cond and body are both sub-jaxprs; only the loop itself is counted.
  return n


def program_flops(fn, args, decode_steps: int = 0) -> tuple[float, float]:
  """(FLOPs with trip counts, once) of `fn(*args)` (abstract args): the decode loops share
  `decode_steps` steps evenly (the sampler's buckets; each runs to its cap, every row to the
  length cap: the roofline's worst case)."""
  jaxpr = jax.make_jaxpr(fn)(*args)
  whiles = count_whiles(jaxpr)
  return count(jaxpr, decode_steps / whiles if whiles else 1.0)
