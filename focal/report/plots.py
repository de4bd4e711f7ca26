"""Plots of sweep results. Each function draws on a `matplotlib.figure.Figure` it is given
(or makes one) and returns it, never touching pyplot's global state or backend, so the same
code saves PNGs from a script (`fig.savefig(path)`) and displays inline in a notebook."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from matplotlib.figure import Figure

from focal.report.stats import eval_curve, group_rows, paired_gap


def _figure(fig: Figure | None, size) -> Figure:
  if fig is None:
    return Figure(figsize=size)
  fig.set_size_inches(*size)
  return fig


def plot_category_curves(runs: dict[str, list[dict]], fig: Figure | None = None,
                         prefix: str = "eval/category/") -> Figure:
  """Per-category pass rate against step: a row per task, a column per aggregator."""
  names = sorted(runs)
  cats = sorted({k[len(prefix):] for rows in runs.values() for r in rows for k in r
                 if k.startswith(prefix)})
  groups: dict[str, list[str]] = defaultdict(list)
  for c in cats:
    groups[c.split("/")[0] if "/" in c else ""].append(c)
  tasks = sorted(groups)
  fig = _figure(fig, (3.3 * len(names), 2.2 * len(tasks)))
  axes = fig.subplots(len(tasks), len(names), squeeze=False, sharex=True, sharey=True)
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
  return fig


def plot_polarization(rows: Sequence[dict], fig: Figure | None = None) -> Figure:
  """Mean rubric reward against worst-category pass rate, one point per run, by aggregator."""
  fig = _figure(fig, (5.5, 4.2))
  ax = fig.subplots()
  for (agg,), rs in sorted(group_rows(rows, ("aggregator.name",)).items()):
    ax.scatter([r["eval/mean_rubric_reward"] for r in rs],
               [r["eval/task_worst_category"] for r in rs], label=agg, s=28)
  ax.set_xlabel("held-out mean rubric reward (%, greedy)")
  ax.set_ylabel("worst category per task (mean)\nhigher = less polarized")
  ax.set_title("each point is one run (seed)", fontsize=9)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


def plot_gaps(rows: Sequence[dict], fig: Figure | None = None,
              metric: str = "eval/mean_rubric_reward",
              reference: str = "weighted_sum") -> Figure | None:
  """Per (task, model): each aggregator's `metric` minus `reference`'s, paired by seed, with
  the seed std of the difference as error bars, so a gap can be read against the noise.

  Returns None, drawing nothing, when the rows hold no other aggregator or no reference."""
  names = {r["aggregator.name"] for r in rows}
  aggs = sorted(names - {reference})
  if reference not in names or not aggs:
    return None
  settings = sorted(group_rows(rows, ("task", "model")).items())
  fig = _figure(fig, (max(5.0, 0.9 * len(settings) + 1.5), 3.6))
  ax = fig.subplots()
  width = 0.8 / max(len(aggs), 1)
  for j, agg in enumerate(aggs):
    xs, gaps, errs = [], [], []
    for i, (_, rs) in enumerate(settings):
      by_agg = group_rows(rs, ("aggregator.name",))
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
  return fig
