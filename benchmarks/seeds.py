"""Seeds as one vmapped program against the same seeds run one after another (figures only).

Usage (from the repository root):
  python -m benchmarks.seeds                                    # tiny, keywords, 3 seeds, 50 steps
  python -m benchmarks.seeds --scale small --steps 20           # a compute-bound scale
  python -m benchmarks.seeds --task suite --seeds 2 4 --steps 30

For each seed count N it trains the same N runs twice from the same warm starts (filled once,
untimed; in a temporary cache unless --cache-dir names one): `loop.run` once per seed, then `loop.run_group` (one jitted
`vmap(train_step)` over a leading seed axis). Both write their metrics, evaluations and checkpoints
exactly as the sweep does, so the wall times include everything a sweep pays per run: building
the prompts, compiling, the GRPO loop, held-out evaluation (not vmapped: one seed at a time) and
orbax checkpoints. "loop" is the time inside the training loop as the run logged it
(`train/seconds` at the last step; evaluation and checkpoints inside the loop included).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import base  # noqa: E402
from focal import components, loop  # noqa: E402
from focal.rundir import RunDir  # noqa: E402


def _loop_seconds(workdir: str) -> float:
  return max(r.get("train/seconds", 0.0) for r in RunDir(workdir).rows())


def make_config(args, cache_dir: str):
  c = base.get_config()
  c.task, c.model.scale, c.total_steps = args.task, args.scale, args.steps
  c.eval_every = c.checkpoint_every = args.steps
  c.log_every = min(c.log_every, args.steps)
  c.aggregator.name = args.aggregator
  c.warm_start.cache_dir = cache_dir
  return c


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--task", default="keywords", help="a task name or 'suite'")
  p.add_argument("--scale", default="tiny", help="model scale: tiny|small|base")
  p.add_argument("--aggregator", default="focal")
  p.add_argument("--seeds", type=int, nargs="+", default=[3], help="seed counts N to compare")
  p.add_argument("--steps", type=int, default=50, help="GRPO iterations per run")
  p.add_argument("--cache-dir", default="", help="warm-start cache to fill and reuse "
                 "(e.g. ~/.cache/focal/warm_start); default: a temporary one")
  args = p.parse_args(argv)

  with tempfile.TemporaryDirectory() as tmp:
    cache = args.cache_dir or os.path.join(tmp, "warm_start")
    cfg = make_config(args, cache)
    for seed in range(max(args.seeds)):  # fill the warm-start cache outside the timings
      c = make_config(args, cache)
      c.seed = seed
      components.build(c, progress=False)
    print(f"task={args.task} scale={args.scale} aggregator={args.aggregator} steps={args.steps}")
    print(f"{'N':>3} {'sequential s':>13} {'vmapped s':>10} {'speed-up':>9} "
          f"{'seq loop s':>11} {'vmap loop s':>12}")
    for n in args.seeds:
      seeds = list(range(n))
      seq_dirs = [os.path.join(tmp, f"seq{n}_{s}") for s in seeds]
      t0 = time.perf_counter()
      for s, d in zip(seeds, seq_dirs):
        c = make_config(args, cache)
        c.seed = s
        loop.run(c, d, progress=False)
      seq = time.perf_counter() - t0
      vmap_dirs = [os.path.join(tmp, f"vmap{n}_{s}") for s in seeds]
      t0 = time.perf_counter()
      loop.run_group(loop.seed_configs(cfg, seeds), vmap_dirs, progress=False)
      vm = time.perf_counter() - t0
      seq_loop = sum(_loop_seconds(d) for d in seq_dirs)
      vm_loop = max(_loop_seconds(d) for d in vmap_dirs)
      print(f"{n:>3} {seq:>13.1f} {vm:>10.1f} {seq / vm:>8.2f}x {seq_loop:>11.1f} {vm_loop:>12.1f}",
            flush=True)


if __name__ == "__main__":
  main()
