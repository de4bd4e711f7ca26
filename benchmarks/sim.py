"""Simulated GRPO throughput: prompt-steps per second, per aggregator, and the scaling in seeds.

Usage (from the repository root):
  python benchmarks/sim.py                                  # P=256 G=16 K=16 M=32, 128 seeds
  python benchmarks/sim.py --methods focal pow3r --steps 20 --scaling 16 32 64 128

Every method by default: the registered aggregators, the criterion-level
estimators (GD²PO included) and the named variants of configs/sim/base.py
(Focal's advantage placement and ema_headroom saturation, GD²PO-SNR).

A prompt-step is G rollouts of one prompt sampled, judged, aggregated and
learned from. Each method is compiled once (first call, reported apart), then
timed on fresh seeds with the same lane count: the same compiled program
(`jit cache` stays at 1 entry per lane count). The scaling rows time the
default method at several seed counts; one new compile per lane count, none
per seed. `cpu/wall` is this process's CPU time over wall time (2 means both
cores busy); on a machine shared with other jobs it falls below 1, and
`per cpu-s` (prompt-steps per CPU second of this process) is the figure that
load does not distort.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs.sim import base  # noqa: E402
from focal import aggregators  # noqa: E402
from focal.sim import components  # noqa: E402
from focal.sim.engine import compiled_lanes, run_lanes  # noqa: E402
from focal.sim.knobs import stack_knobs  # noqa: E402


def _config(args):
  c = base.get_config()
  c.sim.num_prompts, c.sim.group_size = args.prompts, args.group
  c.sim.max_criteria, c.sim.num_types = args.criteria, args.types
  c.sim.steps = c.sim.log_every = args.steps
  return c


def _timed(spec, seeds, knobs):
  wall, cpu = time.perf_counter(), time.process_time()
  jax.block_until_ready(run_lanes(spec, seeds, knobs))
  return time.perf_counter() - wall, time.process_time() - cpu


def measure(config, method: str, num_seeds: int, offset: int) -> dict:
  """Compile (first call) and one timed call on new seeds; returns the figures."""
  spec = components.method_spec(config, method)
  knobs = stack_knobs([components.knob_values(config)] * num_seeds, spec.max_criteria)
  first, _ = _timed(spec, np.arange(num_seeds, dtype=np.uint32), knobs)
  seeds = np.arange(num_seeds, dtype=np.uint32) + offset
  wall, cpu = _timed(spec, seeds, knobs)
  work = num_seeds * spec.num_prompts * spec.steps
  return {"method": method, "seeds": num_seeds, "first_s": first, "wall_s": wall,
          "rate": work / wall, "per_cpu": work / max(cpu, 1e-9), "cpu_wall": cpu / wall,
          "cache": compiled_lanes(spec)._cache_size()}


def _row(r: dict) -> str:
  return (f"{r['method']:<18} {r['seeds']:>5} {r['first_s']:>9.1f} {r['wall_s']:>8.2f} "
          f"{r['rate']:>12,.0f} {r['per_cpu']:>12,.0f} {r['cpu_wall']:>8.2f} {r['cache']:>6}")


HEADER = (f"{'method':<18} {'seeds':>5} {'compile+1':>9} {'wall s':>8} {'steps/s':>12} "
          f"{'per cpu-s':>12} {'cpu/wall':>8} {'cache':>6}")


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  default = dict.fromkeys([*aggregators.registered(), *components.CRITERION_ESTIMATORS,
                           *base.VARIANT_METHODS])
  p.add_argument("--methods", nargs="+", default=list(default),
                 help="aggregators, criterion estimators and configs/sim/base.py variants")
  p.add_argument("--seeds", type=int, default=128, help="seeds vmapped per call")
  p.add_argument("--scaling", type=int, nargs="*", default=[16, 32, 64, 128],
                 help="seed counts for the scaling rows ('' to skip)")
  p.add_argument("--steps", type=int, default=50, help="GRPO steps per call")
  p.add_argument("--prompts", type=int, default=256)
  p.add_argument("--group", type=int, default=16)
  p.add_argument("--criteria", type=int, default=16)
  p.add_argument("--types", type=int, default=32)
  args = p.parse_args(argv)
  config = _config(args)
  print(f"jax {jax.__version__} on {platform.machine()} ({os.cpu_count()} cpus, "
        f"{jax.devices()[0].platform}); python {platform.python_version()}; load average "
        f"{os.getloadavg()[0]:.1f} at start")
  print(f"P={args.prompts} G={args.group} K={args.criteria} M={args.types}, {args.steps} steps "
        f"per call, population {config.sim.population}; 'steps/s' = prompt-steps per second")
  print(HEADER)
  for method in args.methods:
    print(_row(measure(config, method, args.seeds, offset=10_000)), flush=True)
  if args.scaling:
    print("\nscaling in seeds (weighted_sum; one compile per seed count, fresh seeds timed):")
    print(HEADER)
    rows = [measure(config, "weighted_sum", n, offset=20_000) for n in args.scaling]
    for r in rows:
      print(_row(r), flush=True)
    per_seed = [r["wall_s"] / r["seeds"] for r in rows]
    print(f"wall s per seed: {', '.join(f'{x:.3f}' for x in per_seed)} "
          f"(linear scaling keeps these equal)")
  print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
  main()
