"""Tables read back from finished grids' workdirs (comparison.csv, metrics.jsonl).

  python -m focal.sim.report overview [--part=heldout|train] BASELINE WORKDIR...
  python -m focal.sim.report classes [--part=heldout] [--cell=AXIS=VALUE,...] WORKDIR
  python -m focal.sim.report levels [--part=heldout] [--methods=A,B,...] [--metric=KEY] WORKDIR
  python -m focal.sim.report paired [--part=heldout] WORKDIR METHOD BASELINE
"""
from __future__ import annotations

import csv
import json
import os
from typing import Sequence

from focal.sim import stats
from focal.sim.headlines import HEADLINES, LABELS, PART_HEADLINES, PARTS


def overview(workdirs: Sequence[str], baseline: str, part: str | None = None) -> str:
  """Markdown: per grid (workdir) and method, the range over cells of each headline gain vs
  `baseline` and how many cells' 95% intervals lie above / below no effect (0, or 1x).

  `part` ('heldout' or 'train') picks that part of grids with held-out prompts.
  """
  metrics = PART_HEADLINES if part else HEADLINES
  short = {**LABELS, "speedup": "speed-up (x)"}
  out = ["| grid | method | " + " | ".join(short[m] for m in metrics)
         + " | seeds reaching the plateau |", "|---" * (len(metrics) + 3) + "|"]
  for workdir in workdirs:
    with open(os.path.join(workdir, "comparison.csv")) as f:
      rows = [r for r in csv.DictReader(f)
              if r["baseline"] == baseline and r.get("part") == part]
    for method in dict.fromkeys(r["method"] for r in rows):
      rs = [r for r in rows if r["method"] == method]
      cells = []
      for metric in metrics:
        ref = 1.0 if metric == "speedup" else 0.0
        v = [float(r[metric]) for r in rs if r[metric] != "nan"]
        up = sum(float(r[f"{metric}_lo"]) > ref for r in rs)
        down = sum(float(r[f"{metric}_hi"]) < ref for r in rs)
        if not v:
          span = "n/a"
        elif metric == "speedup":
          span = f"{min(v):.2f} to {max(v):.2f}"
        else:
          span = f"{min(v):+.2f} to {max(v):+.2f}"
        cells.append(f"{span} (↑{up} ↓{down})")
      reached = [float(r["reached"]) for r in rs if r["reached"] != "nan"]
      cells.append(f"{min(reached):.0%} to {max(reached):.0%}" if reached else "n/a")
      out.append(f"| {os.path.basename(os.path.normpath(workdir))} ({len(rs)} cells) | {method} | "
                 + " | ".join(cells) + " |")
  return "\n".join(out)


def class_table(workdir: str, part: str = "eval", cell: dict | None = None) -> str:
  """Markdown: per method, at the last logged step of `cell` ({axis: value}; default the
  first cell), the aggregator's weight share on each difficulty class (training batch) and
  the exact pass rate of each class on the `part`'s prompts ('eval' training, 'heldout')."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  last = max(r["step"] for r in rows)
  if cell is None:
    cell = {k: v for k, v in rows[0].items() if k not in ("method", "step", "seeds")
            and "/" not in k}
  names = ("contrastive", "saturated", "rare", "dead")
  out = [f"| method | weight share {' / '.join(names)} | pass rate {' / '.join(names)} |",
         "|---|---|---|"]
  for r in rows:
    if r["step"] != last or any(r.get(k) != v for k, v in cell.items()):
      continue
    share = " / ".join(f"{x:.2f}" for x in r["train/weight_share"])
    rate = " / ".join(f"{r[f'{part}/class/{c}']:.2f}" if r[f"{part}/class/{c}"] is not None
                      else "n/a" for c in names)
    out.append(f"| {r['method']} | {share} | {rate} |")
  return "\n".join(out)


def levels_table(workdir: str, part: str = "eval", methods: Sequence[str] | None = None,
                 metric: str | None = None) -> str:
  """Markdown: per cell and method, a metric's seed mean at the first and last logged step
  that has it: `metric` (a metrics.jsonl key, e.g. train/dropped_frac), by default the mean
  rubric reward (%) on the `part`'s prompts ('eval' training, 'heldout')."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  key = metric or f"{part}/mean_reward_pct"
  rows = [r for r in rows if r.get(key) is not None and (not methods or r["method"] in methods)]
  first, last = min(r["step"] for r in rows), max(r["step"] for r in rows)
  out = [f"| cell | method | {key} at step {first} | at step {last} | change |",
         "|---|---|---|---|---|"]
  d = 2 if metric is None else 3   # decimals: points, or shares
  start = {}
  for r in rows:
    cell = ", ".join(f"{k}={v:g}" for k, v in r.items()
                     if k not in ("method", "step", "seeds") and "/" not in k) or "(base)"
    if r["step"] == first:
      start[(cell, r["method"])] = r[key]
    elif r["step"] == last:
      s = start[(cell, r["method"])]
      out.append(f"| {cell} | {r['method']} | {s:.{d}f} | {r[key]:.{d}f} | {r[key] - s:+.{d}f} |")
  return "\n".join(out)


def paired_table(workdir: str, method: str, baseline: str, part: str = "eval") -> str:
  """Markdown: per cell, `method` minus `baseline` at the last step, paired by seed with a 95%
  interval (results.csv), on the `part`'s prompts: any two methods of a grid, baselines or not."""
  with open(os.path.join(workdir, "results.csv")) as f:
    rows = list(csv.DictReader(f))
  prefix = "" if part == "eval" else f"{part}/"
  metrics = {"reward": ("mean_reward_pct", 1.0), "worst": ("worst_category_pass_rate", 100.0),
             "strict": ("strict_completion", 100.0)}
  axes = list(rows[0])[:list(rows[0]).index("method")]   # the grid's axes come first
  by = {}
  for r in rows:
    by.setdefault(tuple(r[a] for a in axes), {}).setdefault(r["method"], {})[r["seed"]] = r
  out = [f"| cell | {method} - {baseline}: " + " | ".join(LABELS[m] for m in metrics) + " |",
         "|---" * (len(metrics) + 1) + "|"]
  for cell, runs in by.items():
    if method not in runs or baseline not in runs:
      raise ValueError(f"{workdir}: no runs of {method!r} and {baseline!r} in cell {cell}")
    seeds = sorted(set(runs[method]) & set(runs[baseline]), key=int)
    entries = []
    for key, scale in metrics.values():
      a = [scale * float(runs[method][s][prefix + key]) for s in seeds]
      b = [scale * float(runs[baseline][s][prefix + key]) for s in seeds]
      entries.append(stats.paired_gain(a, b).format(2))
    label = ", ".join(f"{a}={float(v):g}" for a, v in zip(axes, cell)) or "(base)"
    out.append(f"| {label} | " + " | ".join(entries) + " |")
  return "\n".join(out)


def _options(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """(positional arguments, {name: value} of the --name=value options)."""
  opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
  return [a for a in argv if not a.startswith("--")], opts


def main(argv: Sequence[str]) -> None:
  """python -m focal.sim.report overview [--part=heldout|train] BASELINE WORKDIR... |
  classes [--part=heldout] [--cell=AXIS=VALUE,...] WORKDIR |
  levels [--part=heldout] [--methods=A,B,...] [--metric=KEY] WORKDIR |
  paired [--part=heldout] WORKDIR METHOD BASELINE"""
  args, opts = _options(argv)
  part = opts.get("part")
  if part is not None and part not in PARTS:
    raise SystemExit(f"--part={part}: choose one of {sorted(PARTS)}")
  if len(args) >= 3 and args[0] == "overview":
    print(overview(args[2:], args[1], part))
  elif len(args) == 2 and args[0] == "classes":
    cell = None
    if "cell" in opts:
      cell = {k: float(v) for k, v in (kv.split("=") for kv in opts["cell"].split(","))}
    print(class_table(args[1], PARTS[part or "train"], cell))
  elif len(args) == 2 and args[0] == "levels":
    methods = opts["methods"].split(",") if "methods" in opts else None
    print(levels_table(args[1], PARTS[part or "train"], methods, opts.get("metric")))
  elif len(args) == 4 and args[0] == "paired":
    print(paired_table(args[1], args[2], args[3], PARTS[part or "train"]))
  else:
    raise SystemExit(main.__doc__)
