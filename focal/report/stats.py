"""Statistics of sweep results: one row per run, seed means, paired gaps, comparisons.

Inputs are run directories (read through `focal.rundir`). Host-side numpy only.
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from focal import aggregators
from focal.metrics.evaluation import steps_to_threshold
from focal.rundir import read_rows

# The static baselines, in registration order (ties between equal seed means go to the first).
STATIC = aggregators.registered(sort=False, static=True)
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
  for (task, model, seed), rs in sorted(group_rows(rows, ("task", "model", "seed")).items(),
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


def group_rows(rows, by: Sequence[str]):
  """{tuple of the `by` fields: rows having them}."""
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



def comparisons(rows: Sequence[dict], method: str, baselines: Sequence[str], metric: str) -> list[dict]:
  """`method` against the best of `baselines` (by seed-mean of `metric`), one dict per (task, model).

  Each dict: task, model, mean, best, best_mean, gap and gap_std (paired by seed, see
  `paired_gap`), seeds (runs of `method`), result ("win", "tie" or "loss").
  """
  by_setting = group_rows(rows, ("task", "model"))
  out = []
  for (task, model), rs in sorted(by_setting.items()):
    by_agg = group_rows(rs, ("aggregator.name",))
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


