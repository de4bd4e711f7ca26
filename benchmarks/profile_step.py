"""Where one `train_step` spends its time, from a jax.profiler trace joined with the compiled HLO.

  python -m benchmarks.profile_step --shape 23.7M            # the vs_peers shapes
  python -m benchmarks.profile_step --shape 0.11M --top 40 --trace-dir /tmp/trace

Traces --steps calls of the jitted, donated `train_step` of benchmarks/peers/focal_worker.py
(after a warm-up call), then sums the duration of every executed XLA op (thunk) by the phase its
HLO metadata names: the decode loop of the rollout, the rest of sampling (prefill), the loss's
forward pass (jvp), its backward pass (transpose), and everything else (grading, aggregation,
advantages, AdamW, metrics). Times are per step; "ops" counts op executions per step. The trace
(open it in Perfetto or TensorBoard) and the optimized HLO stay in --trace-dir.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "peers"))

import jax  # noqa: E402

import focal_worker  # noqa: E402
import shapes  # noqa: E402

PHASES = ("decode loop", "prefill + sampling", "loss forward", "loss backward", "other")


def phase_of(op_name: str) -> str:
  """The phase of an HLO instruction from its metadata op_name (a jit/vjp path)."""
  if "_sample_jit" in op_name:
    return PHASES[0] if "/while/" in op_name else PHASES[1]
  if "transpose(jvp" in op_name:
    return PHASES[3]
  if "jvp(" in op_name:
    return PHASES[2]
  return PHASES[4]


def hlo_instructions(hlo_text: str) -> dict[str, str]:
  """Instruction name -> metadata op_name, for every instruction of the optimized module."""
  out = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s+(?:ROOT )?%(\S+) = ", line)
    if m:
      meta = re.search(r'op_name="([^"]*)"', line)
      out[m.group(1)] = meta.group(1) if meta else ""
  return out


def op_times(trace_file: str, instructions: dict[str, str]) -> dict[str, list]:
  """Instruction name -> [executions, microseconds] over the trace (while loops excluded: their
  bodies' ops are counted themselves, and so are conditionals'). The time is executions x the
  median execution, so that an op descheduled by another job on a shared machine does not count
  at its inflated duration."""
  with gzip.open(trace_file) as f:
    events = json.load(f)["traceEvents"]
  durations = collections.defaultdict(list)
  for e in events:
    name = e.get("name", "")
    if (e.get("ph") == "X" and name in instructions
        and not name.startswith(("while", "cond", "conditional"))):
      durations[name].append(e.get("dur", 0.0))
  return {name: [len(d), len(d) * statistics.median(d)] for name, d in durations.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shape", default="0.11M", choices=sorted(shapes.SHAPES))
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--top", type=int, default=25, help="slowest ops to list")
  parser.add_argument("--trace-dir", default="/tmp/focal_profile")
  args = parser.parse_args(argv)

  _, engine, state, batch = focal_worker.build(args.shape, args.dtype)
  step = jax.jit(engine.train_step, donate_argnums=(0,))
  compiled = step.lower(state, batch).compile()
  os.makedirs(args.trace_dir, exist_ok=True)
  with open(os.path.join(args.trace_dir, "train_step.hlo.txt"), "w") as f:
    f.write(compiled.as_text())
  instructions = hlo_instructions(compiled.as_text())
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  jax.profiler.start_trace(args.trace_dir)
  for _ in range(args.steps):
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
  jax.profiler.stop_trace()
  wall = (time.perf_counter() - start) / args.steps
  trace = max(glob.glob(os.path.join(args.trace_dir, "plugins/profile/*/*.trace.json.gz")),
              key=os.path.getmtime)
  totals = op_times(trace, instructions)

  by_phase = collections.defaultdict(lambda: [0, 0.0])
  for name, (count, us) in totals.items():
    phase = phase_of(instructions[name])
    by_phase[phase][0] += count
    by_phase[phase][1] += us
  op_sum = sum(us for _, us in totals.values()) / args.steps
  print(f"{args.shape} {args.dtype}: {args.steps} traced steps, {wall * 1e3:.1f} ms per step "
        f"wall (profiler on), {op_sum / 1e3:.1f} ms in XLA ops (median-based); "
        f"load {os.getloadavg()[0]:.1f}")
  print(f"{'phase':20s} {'ms/step':>8s} {'share':>6s} {'ops/step':>9s}")
  for phase in PHASES:
    count, us = by_phase[phase]
    print(f"{phase:20s} {us / args.steps / 1e3:8.2f} {100 * us / args.steps / op_sum:5.1f}% "
          f"{count / args.steps:9.0f}")
  print("\nslowest ops (ms per step, executions per step, phase, HLO op_name tail):")
  for name, (count, us) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:args.top]:
    print(f"{us / args.steps / 1e3:8.3f} {count / args.steps:6.0f}  {name[:30]:30s} "
          f"{phase_of(instructions[name]):18s} {instructions[name][-60:]}")
  print(f"\ntrace: {trace}")


if __name__ == "__main__":
  main()
