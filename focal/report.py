"""Sweep results: one CSV row per run, the papers' tables, and the pictures.

Inputs are run directories written by `focal.trainer.run` (metrics.jsonl and
config.json). Everything here is host-side numpy/matplotlib.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from focal.metrics import steps_to_threshold

STATIC = ("weighted_sum", "uniform", "strict", "category_balanced")
HEADLINE = ("eval/mean_rubric_reward", "eval/strict_completion", "eval/worst_category",
            "eval/polarization", "eval/task_worst_category", "eval/task_polarization",
            "eval_sampled/mean_rubric_reward", "eval_sampled/strict_completion")
THRESHOLDS = (45.0, 50.0, 55.0, 60.0)
# Where the learning signal is: of the (held-out prompt, criterion) groups of the sampled
# evaluation, the share no sample passes (dead) and the share every sample passes (saturated).
SIGNAL = ("eval_sampled/dead_share", "eval_sampled/saturated_share")
# Seed means closer than this (relative, and absolute near 0) are a tie: metrics are float32
# sums, so one score reached in two runs can differ by a few ulps (about 1e-7 relative).
TIE_RTOL = 1e-5


def read_rows(run_dir: str) -> list[dict]:
  path = os.path.join(run_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def eval_curve(rows: Sequence[dict], key: str = "eval/mean_rubric_reward"):
  """(steps, values) of the logged evaluations."""
  pts = [(r["step"], r[key]) for r in rows if key in r]
  return [p[0] for p in pts], [p[1] for p in pts]


def task_polarization(row: dict, prefix: str = "eval/category/") -> tuple[float, float]:
  """(mean over tasks of the worst category, mean over tasks of best - worst).

  On a mixed suite the suite-wide worst category is some unreachable criterion
  of some task (0 throughout), which hides movement; within a task it does not.
  Categories are named `<task>/<category>`; without a task prefix all are one task.
  """
  by_task: dict[str, list[float]] = defaultdict(list)
  for key, value in row.items():
    if key.startswith(prefix):
      name = key[len(prefix):]
      by_task[name.split("/")[0] if "/" in name else ""].append(value)
  if not by_task:
    return float("nan"), float("nan")
  worst = [min(v) for v in by_task.values()]
  spread = [max(v) - min(v) for v in by_task.values()]
  return float(np.mean(worst)), float(np.mean(spread))


def summarize_run(run_dir: str, overrides: dict, thresholds=THRESHOLDS) -> dict | None:
  """One results row: the overrides, the final evaluation, steps to each threshold."""
  rows = read_rows(run_dir)
  evals = [r for r in rows if "eval/mean_rubric_reward" in r]
  if not evals:
    return None
  final = evals[-1]
  out = {k: overrides[k] for k in sorted(overrides)}
  out["step"] = final["step"]
  final = dict(final)
  final["eval/task_worst_category"], final["eval/task_polarization"] = task_polarization(final)
  for key in HEADLINE + SIGNAL:
    out[key] = final.get(key, float("nan"))
  for key in ("eval/mean_rubric_reward",) + SIGNAL:
    out[f"start/{key}"] = evals[0].get(key, float("nan")) if evals[0]["step"] == 0 else float("nan")
  steps, values = eval_curve(rows)
  for t, s in steps_to_threshold(steps, values, thresholds).items():
    out[f"steps_to_{t:g}"] = "" if s is None else s
  # Wall seconds of the training loop at its last logged step (warm start excluded), summed
  # over restarts; vmapped seeds share one loop. Checkpoints written before the trainer kept
  # this sum count only from the last restart (arith/base's weighted-sum and Focal groups,
  # sort/base's weighted-sum group).
  seconds = [r["train/seconds"] for r in rows if "train/seconds" in r]
  out["train_seconds"] = round(seconds[-1], 1) if seconds else float("nan")
  out["run_dir"] = run_dir
  out["_curve"] = (steps, values)  # for the relative-gain table; not written to the CSV
  return out


# The step-0 held-out evaluation of a run: a fingerprint of the warm-started policy it trains from.
START_KEYS = ("start/eval/mean_rubric_reward",) + tuple(f"start/{k}" for k in SIGNAL)


def start_mismatches(rows: Sequence[dict]) -> list[str]:
  """The (task, model, seed) points whose aggregators did not start from one policy.

  Paired-by-seed gaps and wins assume a seed's runs share their warm start, and the step-0
  held-out metrics (greedy reward, sampled dead and saturated shares) tell whether they did:
  a warm start recomputed on another machine, whose CPU rounds floats differently over its
  300 supervised steps, lands elsewhere. Returns one line per point where they differ.
  """
  out = []
  for (task, model, seed), rs in sorted(_group(rows, ("task", "model", "seed")).items(),
                                        key=lambda kv: tuple(map(str, kv[0]))):
    starts = {r["aggregator.name"]: tuple(r.get(k, float("nan")) for k in START_KEYS) for r in rs}
    first = next(iter(starts.values()))
    same = all(all(math.isclose(a, b, rel_tol=TIE_RTOL, abs_tol=TIE_RTOL) or (a != a and b != b)
                   for a, b in zip(v, first)) for v in starts.values())
    if not same:
      out.append(f"{task}/{model} seed {seed}: step-0 reward " + ", ".join(
          f"{agg} {v[0]:.2f}" for agg, v in sorted(starts.items())))
  return out


def write_csv(rows: Sequence[dict], path: str) -> None:
  keys: list[str] = []
  for r in rows:
    keys += [k for k in r if k not in keys and not k.startswith("_")]
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)


def _group(rows, by: Sequence[str]):
  groups = defaultdict(list)
  for r in rows:
    groups[tuple(r.get(k) for k in by)].append(r)
  return groups


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
  v = np.asarray([x for x in values if x != "" and not (isinstance(x, float) and math.isnan(x))],
                 float)
  if v.size == 0:
    return float("nan"), float("nan"), 0
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def results_table(rows: Sequence[dict], metrics=HEADLINE) -> str:
  """Markdown: mean ± std over seeds per (task, model, aggregator)."""
  head = "| task | model | aggregator | seeds | " + " | ".join(m.split("/", 1)[1] + (
      " (sampled)" if m.startswith("eval_sampled") else "") for m in metrics) + " |"
  lines = [head, "|" + "---|" * (4 + len(metrics))]
  for (task, model, agg), rs in sorted(_group(rows, ("task", "model", "aggregator.name")).items()):
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
  for (task, model, agg), rs in sorted(_group(rows, ("task", "model", "aggregator.name")).items()):
    cells = [f"{mean_std(r.get('start/' + k, float('nan')) for r in rs)[0]:.{1 if 'reward' in k else 3}f} → "
             f"{mean_std(r.get(k, float('nan')) for r in rs)[0]:.{1 if 'reward' in k else 3}f}"
             for k in keys]
    lines.append(f"| {task} | {model} | {agg} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def comparisons(rows: Sequence[dict], method: str, baselines: Sequence[str], metric: str) -> list[dict]:
  """`method` against the best of `baselines` (by seed-mean of `metric`), one dict per (task, model).

  Each dict: task, model, mean, best, best_mean, gap and gap_std (paired by seed, see
  `paired_gap`), seeds (runs of `method`), result ("win", "tie" or "loss").
  """
  by_setting = _group(rows, ("task", "model"))
  out = []
  for (task, model), rs in sorted(by_setting.items()):
    by_agg = _group(rs, ("aggregator.name",))
    if (method,) not in by_agg:
      continue
    means = {a: mean_std(r[metric] for r in g)[0] for (a,), g in by_agg.items()
             if a == method or a in baselines}
    present = [b for b in baselines if b in means]
    if method not in means or not present:
      continue
    best = max(present, key=lambda b: means[b])
    # Equal seed means (both 0 on a dead category, say) are ties, counted as no win. "Equal"
    # allows float32 rounding: the same held-out score summed in another order differs in
    # its last bits (41.666660 against 41.666653), and that is no win or loss.
    tie = math.isclose(means[method], means[best], rel_tol=TIE_RTOL, abs_tol=TIE_RTOL)
    result = "tie" if tie else "win" if means[method] > means[best] else "loss"
    gap, sd = paired_gap(by_agg[(method,)], by_agg[(best,)], metric)
    out.append({"task": task, "model": model, "mean": means[method], "best": best,
                "best_mean": means[best], "gap": gap, "gap_std": sd,
                "seeds": len(by_agg[(method,)]), "result": result})
  return out


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
  for (task, model), rs in sorted(_group(rows, ("task", "model")).items()):
    per_agg = _group(rs, ("aggregator.name",))
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
  for (task, model), rs in sorted(_group(rows, ("task", "model")).items()):
    per_agg = _group(rs, ("aggregator.name",))
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


def plot_category_curves(runs: dict[str, list[dict]], path: str, prefix: str = "eval/category/"):
  """Per-category pass rate against step: a row per task, a column per aggregator."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = sorted(runs)
  cats = sorted({k[len(prefix):] for rows in runs.values() for r in rows for k in r
                 if k.startswith(prefix)})
  groups: dict[str, list[str]] = defaultdict(list)
  for c in cats:
    groups[c.split("/")[0] if "/" in c else ""].append(c)
  tasks = sorted(groups)
  fig, axes = plt.subplots(len(tasks), len(names), figsize=(3.3 * len(names), 2.2 * len(tasks)),
                           squeeze=False, sharex=True, sharey=True)
  for i, task in enumerate(tasks):
    for j, name in enumerate(names):
      ax = axes[i][j]
      for c in groups[task]:
        steps, values = eval_curve(runs[name], prefix + c)
        ax.plot(steps, values, lw=1.3, label=c.split("/")[-1])
      ax.set_ylim(-0.03, 1.03)
      ax.grid(alpha=0.3)
      if i == 0:
        ax.set_title(name)
      if j == 0:
        ax.set_ylabel(task or "pass rate", fontsize=9)
      if j == len(names) - 1:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
  for ax in axes[-1]:
    ax.set_xlabel("step")
  fig.suptitle("held-out per-category pass rate (greedy)", y=1.0)
  fig.tight_layout()
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def plot_polarization(rows: Sequence[dict], path: str):
  """Mean rubric reward against worst-category pass rate, one point per run, by aggregator."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5.5, 4.2))
  for (agg,), rs in sorted(_group(rows, ("aggregator.name",)).items()):
    ax.scatter([r["eval/mean_rubric_reward"] for r in rs],
               [r["eval/task_worst_category"] for r in rs], label=agg, s=28)
  ax.set_xlabel("held-out mean rubric reward (%, greedy)")
  ax.set_ylabel("worst category per task (mean)\nhigher = less polarized")
  ax.set_title("each point is one run (seed)", fontsize=9)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def paired_gap(rs: Sequence[dict], rs_ref: Sequence[dict], metric: str) -> tuple[float, float]:
  """(mean, std) over seeds of `metric` minus the reference run's with the same seed.

  Runs of one seed share the warm start, the prompts and the evaluation draws, so the
  per-seed difference removes that shared noise. Without a common seed set it falls
  back to the difference of means with sqrt(sd^2 + sd_ref^2)."""
  a = {r.get("seed"): r[metric] for r in rs}
  b = {r.get("seed"): r[metric] for r in rs_ref}
  if set(a) == set(b) and None not in a:
    mu, sd, _ = mean_std(a[s] - b[s] for s in a)
    return mu, sd
  mu, sd, _ = mean_std(a.values())
  ref_mu, ref_sd, _ = mean_std(b.values())
  return mu - ref_mu, math.hypot(sd, ref_sd)


def plot_gaps(rows: Sequence[dict], path: str, metric: str = "eval/mean_rubric_reward",
              reference: str = "weighted_sum") -> bool:
  """Per (task, model): each aggregator's `metric` minus `reference`'s, paired by seed, with
  the seed std of the difference as error bars, so a gap can be read against the noise.

  Returns False, writing nothing, when the rows hold no other aggregator or no reference."""
  names = {r["aggregator.name"] for r in rows}
  aggs = sorted(names - {reference})
  if reference not in names or not aggs:
    return False
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  settings = sorted(_group(rows, ("task", "model")).items())
  fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(settings) + 1.5), 3.6))
  width = 0.8 / max(len(aggs), 1)
  for j, agg in enumerate(aggs):
    xs, gaps, errs = [], [], []
    for i, (_, rs) in enumerate(settings):
      by_agg = _group(rs, ("aggregator.name",))
      if (agg,) not in by_agg or (reference,) not in by_agg:
        continue
      gap, err = paired_gap(by_agg[(agg,)], by_agg[(reference,)], metric)
      xs.append(i + (j - (len(aggs) - 1) / 2) * width)
      gaps.append(gap)
      errs.append(err)
    ax.bar(xs, gaps, width, yerr=errs, capsize=2, label=agg)
  ax.axhline(0.0, color="k", lw=0.8)
  ax.set_xticks(range(len(settings)))
  ax.set_xticklabels([f"{t}\n{m}" for (t, m), _ in settings], fontsize=8)
  ax.set_ylabel(f"{metric.split('/', 1)[1]}\nminus {reference}")
  ax.set_title("gap to the static weighted sum, paired by seed (bars: std over seeds)", fontsize=9)
  ax.legend(fontsize=7, ncol=len(aggs))
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True
