"""Tables read back from finished grids' workdirs (comparison.csv, metrics.jsonl).

  python -m focal.sim.report overview [--part=heldout|train] BASELINE WORKDIR...
  python -m focal.sim.report classes [--part=heldout] [--cell=AXIS=VALUE,...] WORKDIR
"""
from __future__ import annotations

import csv
import json
import os
from typing import Sequence

from focal.sim.report import HEADLINES, LABELS, PART_HEADLINES, PARTS


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


def _options(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """(positional arguments, {name: value} of the --name=value options)."""
  opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
  return [a for a in argv if not a.startswith("--")], opts


def main(argv: Sequence[str]) -> None:
  """python -m focal.sim.report overview [--part=heldout|train] BASELINE WORKDIR... |
  classes [--part=heldout] [--cell=AXIS=VALUE,...] WORKDIR"""
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
  else:
    raise SystemExit(main.__doc__)
