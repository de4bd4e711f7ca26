"""Per-criterion trace of one run: the aggregator's weight (train) and the held-out pass rate.

  python tools/criterion_trace.py "results/focal_full/agg=focal,model=tiny,seed=0,task=digitsum"
  python tools/criterion_trace.py RUN_DIR --steps 10 100 200

Reads RUN_DIR/metrics.jsonl only. Weights are `train/weight/<task>/<criterion>` (abs-normalised
per prompt, averaged over the step's prompts); POW3R's factors `train/factor/...` (the same
average, printed when the run logs them); training pass rates `train/pass_rate/...` (the
step's sampled rollouts on training prompts; printed with --train) and held-out pass rates
`eval/criterion/<task>/<criterion>` (greedy responses to the held-out prompts). The two pass
rates side by side show a criterion the policy learns on its training prompts but not beyond
them. A step without the metric prints '-'.
"""
from __future__ import annotations

import argparse
import os
import sys

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focal.rundir import RunDir  # noqa: E402


def load(run_dir: str) -> dict[int, dict]:
  run = RunDir(run_dir)
  if not os.path.exists(run.metrics_path):
    raise SystemExit(f"no metrics.jsonl in {run_dir!r}")
  return run.rows_by_step()


def table(rows: dict[int, dict], prefix: str, steps) -> str:
  names = sorted({k[len(prefix):] for r in rows.values() for k in r if k.startswith(prefix)})
  if not names:
    return f"(no {prefix}* metrics)"
  width = max(len(n) for n in names)
  out = [f"{prefix + '*':<{width}}  " + "  ".join(f"{'step ' + str(s):>9}" for s in steps)]
  for n in names:
    cells = [rows.get(s, {}).get(prefix + n) for s in steps]
    out.append(f"{n:<{width}}  " + "  ".join(f"{c:>9.3f}" if c is not None else f"{'-':>9}"
                                              for c in cells))
  return "\n".join(out)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("run_dir")
  p.add_argument("--steps", type=int, nargs="+", help="steps to show (default: every eval step)")
  p.add_argument("--train", action="store_true",
                 help="also print the training rollouts' pass rate per criterion")
  args = p.parse_args(argv)
  rows = load(args.run_dir)
  steps = args.steps or sorted(s for s, r in rows.items() if any(k.startswith("eval/") for k in r))
  print(table(rows, "train/weight/", [s for s in steps if s > 0]))
  if any(k.startswith("train/factor/") for r in rows.values() for k in r):
    print()
    print(table(rows, "train/factor/", [s for s in steps if s > 0]))
  if args.train:
    print()
    print(table(rows, "train/pass_rate/", [s for s in steps if s > 0]))
  print()
  print(table(rows, "eval/criterion/", steps))


if __name__ == "__main__":
  main()
