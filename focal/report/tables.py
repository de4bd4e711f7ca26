"""Markdown and text tables of run results: the papers' tables, wins, steps to threshold,
and the per-category table a run ends with."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from focal.metrics.evaluation import steps_to_threshold
from focal.report.stats import (HEADLINE, SIGNAL, STATIC, THRESHOLDS, group_rows, comparisons,
                                mean_std)

def results_table(rows: Sequence[dict], metrics=HEADLINE) -> str:
  """Markdown: mean ± std over seeds per (task, model, aggregator)."""
  head = "| task | model | aggregator | seeds | " + " | ".join(m.split("/", 1)[1] + (
      " (sampled)" if m.startswith("eval_sampled") else "") for m in metrics) + " |"
  lines = [head, "|" + "---|" * (4 + len(metrics))]
  for (task, model, agg), rs in sorted(group_rows(rows, ("task", "model", "aggregator.name")).items()):
    cells = []
    for m in metrics:
      mu, sd, _ = mean_std(r[m] for r in rs)
      cells.append(f"{mu:.2f} ± {sd:.2f}" if "reward" in m else f"{mu:.3f} ± {sd:.3f}")
    lines.append(f"| {task} | {model} | {agg} | {len(rs)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def signal_table(rows: Sequence[dict]) -> str:
  """Markdown: greedy mean rubric reward, and the sampled dead and saturated shares, at
  step 0 (the warm-started policy) -> the final step; means over seeds."""
  keys = ("eval/mean_rubric_reward",) + SIGNAL
  names = ["mean_rubric_reward"] + [k.split("/", 1)[1] + " (sampled)" for k in SIGNAL]
  lines = ["| task | model | aggregator | " + " | ".join(f"{n}, step 0 → final" for n in names) + " |",
           "|" + "---|" * (3 + len(keys))]
  for (task, model, agg), rs in sorted(group_rows(rows, ("task", "model", "aggregator.name")).items()):
    cells = [f"{mean_std(r.get('start/' + k, float('nan')) for r in rs)[0]:.{1 if 'reward' in k else 3}f} → "
             f"{mean_std(r.get(k, float('nan')) for r in rs)[0]:.{1 if 'reward' in k else 3}f}"
             for k in keys]
    lines.append(f"| {task} | {model} | {agg} | " + " | ".join(cells) + " |")
  return "\n".join(lines)



def wins(rows: Sequence[dict], method: str, baselines: Sequence[str], metric: str) -> tuple:
  """How often `method` beats the best of `baselines` (by seed-mean of `metric`).

  Returns (wins, comparisons, lines) with one line per (task, model) setting.
  """
  cs = comparisons(rows, method, baselines, metric)
  return sum(c["result"] == "win" for c in cs), len(cs), [_wins_line(c) for c in cs]


def _wins_line(c: dict) -> str:
  return (f"| {c['task']} | {c['model']} | {c['mean']:.3f} | {c['best']} {c['best_mean']:.3f} | "
          f"{c['gap']:+.3f} ± {c['gap_std']:.3f} | {c['result']} |")


def clear_of_noise(cs: Sequence[dict]) -> str:
  """Which wins and losses of `comparisons` exceed their paired seed std, as one line.

  Wins are counted by seed means, as the papers do; this says which of them a reader can
  tell from seed noise. A single seed has no spread, so its gaps are never "clear".
  """
  def clear(result):
    return [f"{c['task']}/{c['model']}" for c in cs
            if c["result"] == result and c["seeds"] > 1 and abs(c["gap"]) > c["gap_std"]]
  won, lost = clear("win"), clear("loss")
  n_won, n_lost = (sum(c["result"] == r for c in cs) for r in ("win", "loss"))
  return (f"Clear of seed noise (|paired gap| > its std): {len(won)} of {n_won} wins"
          + (f" ({', '.join(won)})" if won else "") + f", {len(lost)} of {n_lost} losses"
          + (f" ({', '.join(lost)})" if lost else "") + ".")


def wins_section(rows: Sequence[dict]) -> str:
  """The papers' headline comparisons in markdown."""
  out = []
  specs = [
      ("focal", STATIC, "eval/mean_rubric_reward",
       "Focal vs the strongest static baseline (mean rubric reward)"),
      ("focal", STATIC, "eval/task_worst_category",
       "Focal vs the strongest static baseline (worst category within a task, mean over tasks)"),
      ("pow3r", ("weighted_sum",), "eval/mean_rubric_reward", "POW3R vs static weighted sum (mean rubric reward)"),
      ("pow3r", ("weighted_sum",), "eval/strict_completion", "POW3R vs static weighted sum (strict completion)"),
      ("pow3r", ("category_balanced",), "eval/mean_rubric_reward",
       "POW3R vs category-balanced (mean rubric reward)"),
      ("pow3r", ("category_balanced",), "eval/strict_completion",
       "POW3R vs category-balanced (strict completion)"),
  ]
  for method, baselines, metric, title in specs:
    cs = comparisons(rows, method, baselines, metric)
    if not cs:
      continue
    won, ties = (sum(c["result"] == r for c in cs) for r in ("win", "tie"))
    header = f"| task | model | {method} | best baseline | gap (paired by seed) | result |"
    out.append(f"### {title}: {won} wins out of {len(cs)}" + (f" ({ties} ties)" if ties else "") + "\n")
    out.append(header + "\n|---|---|---|---|---|---|")
    out += [_wins_line(c) for c in cs]
    out.append("")
    out.append(clear_of_noise(cs) + "\n")
  return "\n".join(out)


def steps_table(rows: Sequence[dict], thresholds=THRESHOLDS, reference: str = "weighted_sum") -> str:
  """POW3R Table 4's form: mean steps to cross each threshold, and the speed-up over `reference`."""
  lines = ["| task | model | aggregator | " + " | ".join(f"≥{t:g}%" for t in thresholds) + " |",
           "|" + "---|" * (3 + len(thresholds))]
  for (task, model), rs in sorted(group_rows(rows, ("task", "model")).items()):
    per_agg = group_rows(rs, ("aggregator.name",))
    ref = {t: mean_std(r.get(f"steps_to_{t:g}", "") for r in per_agg.get((reference,), []))
           for t in thresholds}
    for (agg,), g in sorted(per_agg.items()):
      cells = []
      for t in thresholds:
        mu, _, n = mean_std(r.get(f"steps_to_{t:g}", "") for r in g)
        if n == 0:
          cells.append("never")
          continue
        cell = f"{mu:.0f} ({n}/{len(g)})"
        if agg != reference and ref[t][2] and mu > 0:
          cell += f" ×{ref[t][0] / mu:.1f}"
        cells.append(cell)
      lines.append(f"| {task} | {model} | {agg} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


GAIN_FRACTIONS = (0.5, 0.75, 1.0)


def gain_steps_table(rows: Sequence[dict], fractions=GAIN_FRACTIONS,
                     reference: str = "weighted_sum") -> str:
  """Steps to reach a share of `reference`'s final gain, per (task, model) setting.

  Absolute thresholds suit one task's scale and not another's (a hard task never
  reaches 45%); this table measures every task on its own scale. The gain is the
  reference's seed-mean final reward minus the seed-mean step-0 reward (the warm-started
  policy, shared by all aggregators of a seed); a run reaches fraction f at its first
  evaluation with reward >= its own step-0 reward + f * gain. Fraction 1.0 is "the
  reference's plateau", the POW3R paper's "same plateau in fewer steps". Rows need
  "_curve" and "start/eval/mean_rubric_reward" (from `summarize_run`).
  """
  head = "| task | model | gain (points) | aggregator | " + " | ".join(
      f"{f:.0%} of gain" for f in fractions) + " |"
  lines = [head, "|" + "---|" * (4 + len(fractions))]
  for (task, model), rs in sorted(group_rows(rows, ("task", "model")).items()):
    per_agg = group_rows(rs, ("aggregator.name",))
    if (reference,) not in per_agg:
      continue
    start = mean_std(r.get("start/eval/mean_rubric_reward", float("nan")) for r in rs)[0]
    final = mean_std(r["eval/mean_rubric_reward"] for r in per_agg[(reference,)])[0]
    gain = final - start
    if not gain > 0:
      lines.append(f"| {task} | {model} | {gain:.1f} | (no gain to measure) |" + " |" * len(fractions))
      continue
    steps = {}
    for (agg,), g in per_agg.items():
      for f in fractions:
        hits = []
        for r in g:
          xs, ys = r["_curve"]
          target = r["start/eval/mean_rubric_reward"] + f * gain
          hit = steps_to_threshold(xs, ys, (target,))[float(target)]
          if hit is not None:
            hits.append(hit)
        steps[agg, f] = (float(np.mean(hits)) if hits else None, len(hits), len(g))
    for (agg,), _ in sorted(per_agg.items()):
      cells = []
      for f in fractions:
        mu, n, total = steps[agg, f]
        if mu is None:
          cells.append("never")
          continue
        cell = f"{mu:.0f} ({n}/{total})"
        ref = steps[reference, f][0]
        if agg != reference and ref and mu > 0:
          cell += f" ×{ref / mu:.1f}"
        cells.append(cell)
      lines.append(f"| {task} | {model} | {gain:.1f} | {agg} | " + " | ".join(cells) + " |")
  return "\n".join(lines)




# (key, label, format) of the METHODS §7 headline metrics, in report order.
SUMMARY = (
    ("mean_rubric_reward", "mean rubric reward (%)", "{:.2f}"),
    ("strict_completion", "strict completion", "{:.3f}"),
    ("worst_category", "worst category pass rate", "{:.3f}"),
    ("best_category", "best category pass rate", "{:.3f}"),
    ("polarization", "polarization (best - worst)", "{:.3f}"),
    ("saturated_share", "saturated criteria share", "{:.3f}"),
    ("dead_share", "dead criteria share", "{:.3f}"),
    ("zero_signal_pressure", "zero-signal pressure", "{:.3f}"),
    ("response_length", "response length (tokens)", "{:.1f}"),
)


def category_table(row: dict) -> str:
  """A text table of per-category pass rates (greedy and sampled) from an eval row."""
  cats = sorted(k[len("eval/category/"):] for k in row if k.startswith("eval/category/"))
  lines = [f"{'category':<32}{'greedy':>10}{'sampled':>10}"]
  for c in cats:
    sampled = row.get(f"eval_sampled/category/{c}", float("nan"))
    lines.append(f"{c:<32}{row[f'eval/category/{c}']:>10.3f}{sampled:>10.3f}")
  lines.append(f"{'mean rubric reward (%)':<32}{row.get('eval/mean_rubric_reward', float('nan')):>10.2f}"
               f"{row.get('eval_sampled/mean_rubric_reward', float('nan')):>10.2f}")
  lines.append(f"{'strict completion':<32}{row.get('eval/strict_completion', float('nan')):>10.3f}"
               f"{row.get('eval_sampled/strict_completion', float('nan')):>10.3f}")
  return "\n".join(lines)


def summary_table(row: dict) -> str:
  """Headline metrics, greedy next to sampled."""
  lines = [f"{'metric':<32}{'greedy':>10}{'sampled':>10}"]
  for key, label, fmt in SUMMARY:
    cells = []
    for prefix in ("eval", "eval_sampled"):
      value = row.get(f"{prefix}/{key}", math.nan)
      cells.append(f"{fmt.format(value):>10}")
    lines.append(f"{label:<32}{''.join(cells)}")
  return "\n".join(lines)


def format_report(row: dict, title: str | None = None) -> str:
  """The summary and the per-category pass rates of an eval row, as printable text."""
  head = title or f"held-out evaluation at step {row.get('step', '?')}"
  return "\n\n".join([head, summary_table(row), category_table(row)])
