"""Figures of simulated grids: phase-diagram heat maps and learning curves (matplotlib, Agg)."""
from __future__ import annotations

import io
import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from focal.sim.grid import GridResult  # noqa: E402
from focal.sim.report import LABELS, headlines  # noqa: E402


def save_small(fig, path: str, dpi: int = 72) -> None:
  """Saves a figure as a 128-colour palette PNG (a third of the size; figures are committed)."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
  plt.close(fig)
  buffer.seek(0)
  Image.open(buffer).convert("RGB").quantize(colors=128).save(path, optimize=True)


def _panel_values(rows: Sequence[dict], method: str, metric: str, xs, ys, x_axis, y_axis):
  """[len(ys), len(xs)] means and a bool mask of cells whose CI clears 0 (1 for speed-ups)."""
  value = np.full((len(ys), len(xs)), np.nan)
  clear = np.zeros((len(ys), len(xs)), bool)
  for r in rows:
    if r["method"] != method:
      continue
    i, j = ys.index(r["cell"][y_axis]), xs.index(r["cell"][x_axis])
    iv = r[metric]
    if metric == "speedup":
      value[i, j] = math.log2(iv.mean) if iv.n else np.nan
      clear[i, j] = iv.n > 1 and (iv.lo > 1.0 or iv.hi < 1.0)
    else:
      value[i, j] = iv.mean
      clear[i, j] = iv.excludes_zero
  return value, clear


def phase_heatmaps(rows: Sequence[dict], methods: Sequence[str], x_axis: str, y_axis: str,
                   title: str, path: str) -> None:
  """Rows = headline metrics (`report.headlines(rows)`), columns = methods; each panel a
  y x x heat map of one gain.

  Colour: gain (points) or log2 speed-up, blue = method better, red = worse,
  on one symmetric scale per metric. Numbers print in every cell, bold when the
  95% interval excludes 0 (1 for speed-ups); a dot marks cells within noise.
  """
  xs = sorted({r["cell"][x_axis] for r in rows})
  ys = sorted({r["cell"][y_axis] for r in rows})
  metrics = headlines(rows)
  fig, axes = plt.subplots(len(metrics), len(methods), squeeze=False,
                           figsize=(2.3 * len(methods) + 1.0, 2.1 * len(metrics) + 0.6))
  for a, metric in enumerate(metrics):
    panels = [_panel_values(rows, m, metric, xs, ys, x_axis, y_axis) for m in methods]
    scale = max([np.nanmax(np.abs(v)) for v, _ in panels if np.isfinite(v).any()] + [1e-9])
    for b, (method, (value, clear)) in enumerate(zip(methods, panels)):
      ax = axes[a, b]
      image = ax.imshow(value, origin="lower", cmap="RdBu", vmin=-scale, vmax=scale,
                        aspect="auto")
      for i in range(len(ys)):
        for j in range(len(xs)):
          v = value[i, j]
          text = "n/a" if not np.isfinite(v) else (f"{2 ** v:.2g}x" if metric == "speedup"
                                                   else f"{v:+.1f}")
          ax.text(j, i, text if clear[i, j] else f"{text}\n·", ha="center", va="center",
                  fontsize=6.5, fontweight="bold" if clear[i, j] else "normal")
      ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs], fontsize=7)
      ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys], fontsize=7)
      if a == 0:
        ax.set_title(method, fontsize=9)
      if a == len(metrics) - 1:
        ax.set_xlabel(x_axis, fontsize=8)
      if b == 0:
        ax.set_ylabel(f"{LABELS[metric]}\n{y_axis}", fontsize=7)
    fig.colorbar(image, ax=axes[a, :].tolist(), shrink=0.8, pad=0.01)
  fig.suptitle(title, fontsize=10)
  save_small(fig, path)


def learning_curves(result: GridResult, cell_index: int, path: str, title: str) -> None:
  """Mean rubric reward and worst category vs step per method, with 95% bands over seeds."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  n = len(result.seeds)
  for method in result.methods:
    ev = result.eval[method]
    for ax, key, scale in ((axes[0], "mean_reward_pct", 1.0),
                           (axes[1], "worst_category_pass_rate", 100.0)):
      curves = scale * ev[key][cell_index]
      mean = curves.mean(0)
      half = 1.96 * curves.std(0, ddof=1) / math.sqrt(n) if n > 1 else 0.0 * mean
      ax.plot(result.steps, mean, label=method, lw=1.2)
      ax.fill_between(result.steps, mean - half, mean + half, alpha=0.2)
  axes[0].set_ylabel("mean rubric reward (%)")
  axes[1].set_ylabel("worst category pass rate (%)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=7, ncol=2)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  save_small(fig, path, dpi=80)
