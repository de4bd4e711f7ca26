"""Tables and files of a simulated grid: paired gains per cell, curves, per-seed results.

(Tables read back from finished grids' files: `focal.sim.tables`, whose command line is
also `python -m focal.sim.report`.)

`compare(result, baseline, plateau_share)` gives one row per (cell, method):
  reward: final mean rubric reward (%, static weighted score) minus the baseline's;
  worst: final worst-category pass rate (points) minus the baseline's;
  speedup: baseline steps / method steps to reach `plateau_share` of the
    baseline's own gain (start + share (final - start), per seed), as a
    geometric mean with a 95% interval (`stats.speedup`); `reached` is the share
    of seeds in which the method got there within the run.
All three are paired by seed (same world, same initial policy).

With held-out prompts (`result.heldout`), `compare(..., part='heldout' | 'train')`
compares on those prompts or on the training prompts and adds
  strict: final strict completion (points) minus the baseline's;
comparison.csv then has a `part` column and summary.md a section per part.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Sequence

import numpy as np

from focal.metrics.evaluation import steps_to_threshold
from focal.sim import stats
from focal.sim.grid import GridResult
from focal.sim.headlines import (GAIN_METRICS, HEADLINES, LABELS, PART_HEADLINES,  # noqa: F401
                                   PART_TITLES, PARTS)


def cell_label(cell: dict) -> str:
  return ", ".join(f"{k}={v:g}" for k, v in cell.items()) or "(base)"


def compare(result: GridResult, baseline: str, plateau_share: float,
            part: str | None = None) -> list[dict]:
  """Rows {cell, method, reward, worst, speedup: Interval, reached, ...} for every other method.

  `part` None: the training prompts, as grids without held-out prompts report them;
  'heldout' or 'train': that part, with `strict` and a `part` entry in every row.
  """
  horizon = float(result.steps[-1] + (result.steps[1] - result.steps[0]))
  rows = []
  metrics = result.part(PARTS[part]) if part else result.eval
  gains = GAIN_METRICS if part else {k: GAIN_METRICS[k] for k in ("reward", "worst")}
  base = metrics[baseline]
  for c, cell in enumerate(result.cells):
    base_curve = base["mean_reward_pct"][c]
    targets = stats.plateau_targets(base_curve, plateau_share)
    base_steps = stats.first_crossing(base_curve, result.steps, targets)
    for method in result.methods:
      if method == baseline:
        continue
      ev = metrics[method]
      row = {"cell": cell, "method": method, "baseline": baseline}
      if part:
        row["part"] = part
      for name, (key, scale) in gains.items():
        row[name] = stats.paired_gain(scale * ev[key][c][:, -1], scale * base[key][c][:, -1])
      steps = stats.first_crossing(ev["mean_reward_pct"][c], result.steps, targets)
      row["speedup"] = stats.speedup(base_steps, steps, horizon)
      row["reached"] = stats.reached_share(steps)
      row["method_reward"] = stats.mean_interval(ev["mean_reward_pct"][c][:, -1])
      row["baseline_reward"] = stats.mean_interval(base_curve[:, -1])
      rows.append(row)
  return rows


def _fmt(iv: stats.Interval, metric: str) -> str:
  text = iv.format(2)
  if metric == "speedup":
    if iv.n == 0:
      return "n/a"
    text = f"{iv.mean:.2f} [{iv.lo:.2f}, {iv.hi:.2f}]"
    clear = iv.n > 1 and (iv.lo > 1.0 or iv.hi < 1.0)
  else:
    clear = iv.excludes_zero
  return f"**{text}**" if clear else text


def headlines(rows: Sequence[dict]) -> tuple[str, ...]:
  """The headline metrics the rows of `compare` carry (strict only with a part)."""
  return PART_HEADLINES if rows and "strict" in rows[0] else HEADLINES


def markdown_tables(rows: Sequence[dict], methods: Sequence[str], title: str) -> str:
  """One table per headline metric: rows = cells, columns = methods (bold: CI excludes 0 / 1)."""
  cells = list(dict.fromkeys(cell_label(r["cell"]) for r in rows))
  by = {(cell_label(r["cell"]), r["method"]): r for r in rows}
  out = []
  for metric in headlines(rows):
    out.append(f"**{title}: {LABELS[metric]}**, mean [95% CI] over seeds\n")
    out.append("| cell | " + " | ".join(methods) + " |")
    out.append("|---" * (len(methods) + 1) + "|")
    for cell in cells:
      entries = [_fmt(by[(cell, m)][metric], metric) if (cell, m) in by else "" for m in methods]
      out.append(f"| {cell} | " + " | ".join(entries) + " |")
    out.append("")
  return "\n".join(out)


def comparison_csv(rows: Sequence[dict], path: str) -> None:
  """The rows of `compare` (all baselines) flattened to CSV columns."""
  fields, flat = [], []
  for r in rows:
    d = {**r["cell"], **({"part": r["part"]} if "part" in r else {}), "method": r["method"],
         "baseline": r["baseline"], "reached": round(r["reached"], 4)}
    for metric in (*headlines([r]), "method_reward", "baseline_reward"):
      iv = r[metric]
      d.update({metric: iv.mean, f"{metric}_lo": iv.lo, f"{metric}_hi": iv.hi})
    d["seeds"] = r["reward"].n
    flat.append(d)
    fields.extend(k for k in d if k not in fields)
  _write_csv(flat, fields, path)


def _write_csv(rows, fields, path):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for r in rows:
      writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _scalar_curves(result: GridResult, method: str, c: int,
                   part: str = "eval") -> dict[str, np.ndarray]:
  """Per-seed curves [S, T+1] of every scalar or named-vector metric of one cell, keyed
  '<part>/<metric>' ('eval' for the training prompts, 'heldout')."""
  ev = result.part(part)[method]
  out = {f"{part}/{k}": v[c] for k, v in ev.items() if v.ndim == 3}
  empty = ev["category_count"][c] == 0
  rates = np.where(empty, np.nan, ev["category_pass_rate"][c])   # an empty category has no rate
  for i, name in enumerate(result.category_names):
    out[f"{part}/category/{name}"] = rates[..., i]
  for i, name in enumerate(result.class_names):
    out[f"{part}/class/{name}"] = ev["class_pass_rate"][c][..., i]
  return out


def _all_curves(result: GridResult, method: str, c: int) -> dict[str, np.ndarray]:
  """_scalar_curves of the training prompts and, if any, of the held-out prompts."""
  out = _scalar_curves(result, method, c)
  if result.heldout:
    out.update(_scalar_curves(result, method, c, "heldout"))
  return out


def write_metrics_jsonl(result: GridResult, path: str) -> None:
  """One line per (cell, method, logged step): seed means and standard errors."""
  n = len(result.seeds)
  with open(path, "w") as f:
    for c, cell in enumerate(result.cells):
      for method in result.methods:
        curves = _all_curves(result, method, c)
        tr = result.train[method]
        for t, step in enumerate(result.steps):
          row = {**cell, "method": method, "step": int(step), "seeds": n}
          for key, v in curves.items():
            iv = stats.mean_interval(v[:, t])
            row[key] = iv.mean
            row[f"{key}/sem"] = float(np.nanstd(v[:, t], ddof=1) / np.sqrt(iv.n)) if iv.n > 1 \
                else 0.0
          if t > 0:
            for key, v in tr.items():
              mean = np.mean(v[c][:, t - 1], 0)
              row[f"train/{key}"] = mean.tolist() if np.ndim(mean) else float(mean)
          f.write(json.dumps(_json_safe(row)) + "\n")


def _json_safe(row: dict) -> dict:
  """NaN (an empty category, an undefined mean) as null: JSON has no NaN."""
  return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}


def write_results_csv(result: GridResult, path: str, thresholds: Sequence[float]) -> None:
  """One row per (cell, method, seed): final metrics and steps to each reward threshold."""
  rows = []
  for c, cell in enumerate(result.cells):
    for method in result.methods:
      curves = _all_curves(result, method, c)
      for s, seed in enumerate(result.seeds):
        row = {**cell, "method": method, "seed": int(seed)}
        row.update({k.removeprefix("eval/"): float(v[s, -1]) for k, v in curves.items()})
        for part, prefix in (("eval", ""), ("heldout", "heldout/")):
          if f"{part}/mean_reward_pct" in curves:
            reach = steps_to_threshold(result.steps, curves[f"{part}/mean_reward_pct"][s],
                                       thresholds)
            row.update({f"{prefix}steps_to_{t:g}": ("" if v is None else v)
                        for t, v in reach.items()})
        rows.append(row)
  _write_csv(rows, list(rows[0]) if rows else [], path)


def write_all(result: GridResult, workdir: str, baselines: Sequence[str], plateau_share: float,
              thresholds: Sequence[float], title: str) -> tuple[str, dict[str, list[dict]]]:
  """metrics.jsonl, results.csv, comparison.csv and summary.md in `workdir`; returns the
  summary text and the comparison rows per baseline (on the held-out prompts when the grid
  has them: the rows its phase diagrams show)."""
  os.makedirs(workdir, exist_ok=True)
  write_metrics_jsonl(result, os.path.join(workdir, "metrics.jsonl"))
  write_results_csv(result, os.path.join(workdir, "results.csv"), thresholds)
  parts = ("heldout", "train") if result.heldout else (None,)
  by_part = {part: {b: compare(result, b, plateau_share, part) for b in baselines}
             for part in parts}
  comparison_csv([r for by_baseline in by_part.values() for rows in by_baseline.values()
                  for r in rows], os.path.join(workdir, "comparison.csv"))
  summary = [f"# {title}\n", f"{len(result.seeds)} seeds per cell; steps to plateau: "
             f"{plateau_share:.0%} of the baseline's own gain.\n"]
  for part, by_baseline in by_part.items():
    if part:
      summary.append(f"## On the {PART_TITLES[part]}\n")
    for b, rows in by_baseline.items():
      methods = [m for m in result.methods if m != b]
      summary.append(markdown_tables(rows, methods, f"vs {b}"))
  summary = "\n".join(summary)
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write(summary)
  return summary, by_part[parts[0]]


def main(argv: Sequence[str]) -> None:
  """The command line of `focal.sim.tables` (overview and class tables of finished grids)."""
  from focal.sim import tables   # it reads this module's constants
  tables.main(argv)


if __name__ == "__main__":
  import sys
  main(sys.argv[1:])
