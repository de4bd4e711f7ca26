r"""Runs the rubric-dynamics simulator: every method of a config, over its grid if it has one.

  python -m experiments.simulate --config=configs/sim/base.py --workdir=runs/sim
  python -m experiments.simulate --config=configs/sim/phase_rare_saturated.py \
      --workdir=results/sim/rare_saturated --figures=docs/img/sim_rare_saturated

A config file that defines `get_grid(arg)` ({axis: values}, two axes for a
phase diagram) runs every cell of it; otherwise the config's one setting runs.
Writes to WORKDIR: config.json, metrics.jsonl (seed means and standard errors
per cell, method and logged step), results.csv (per seed: final metrics, steps
to each threshold), comparison.csv and summary.md (paired gains against each
baseline with 95% intervals; on held-out and training prompts when the config
has `sim.num_heldout > 0`), and figures: `<figures>_vs_<baseline>.png` heat
maps for a two-axis grid (of the held-out gains when there are held-out
prompts; `--figures` defaults to WORKDIR/phase), else learning curves
`<figures>.png` (default WORKDIR/curves.png).
"""
import json
import os
import platform
import sys
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from focal import cli
from focal.sim import grid as grid_lib
from focal.sim import plots, report

config_flags.DEFINE_config_file("config", None, "A configs/sim/*.py file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where the metrics, tables and figures go.", required=True)
flags.DEFINE_string("figures", None, "Path prefix of the PNGs (default WORKDIR/phase or "
                    "WORKDIR/curves).")
flags.DEFINE_string("compilation_cache", "~/.cache/focal/jax_sim",
                    "Persistent XLA compilation cache ('' disables): reruns skip compiling.")
FLAGS = flags.FLAGS


def load_grid():
  """The config file's get_grid(arg), or None when it defines none."""
  module, arg = cli.config_module(FLAGS["config"])
  get_grid = getattr(module, "get_grid", None)
  return None if get_grid is None else get_grid(arg)


def _write_config(config, grid, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  provenance = {"command": " ".join(sys.argv), "grid": grid, "jax": jax.__version__,
                "python": platform.python_version(), "machine": platform.machine(),
                "cpus": os.cpu_count()}
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"config": json.loads(config.to_json()), "provenance": provenance}, f, indent=2)


def main(argv):
  del argv
  if FLAGS.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  config, workdir = FLAGS.config, FLAGS.workdir
  grid = load_grid()
  _write_config(config, grid, workdir)
  start = time.time()
  result = grid_lib.run_grid(config, grid)
  elapsed = time.time() - start
  title = os.path.basename(config_flags.get_config_filename(FLAGS["config"]))
  summary, by_baseline = report.write_all(result, workdir, config.baselines,
                                          config.plateau_share, config.thresholds, title)
  axes = list(grid or {})
  if len(axes) == 2:
    prefix = FLAGS.figures or os.path.join(workdir, "phase")
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    for baseline, rows in by_baseline.items():
      methods = [m for m in result.methods if m != baseline]
      path = f"{prefix}_vs_{baseline}.png"
      where = " on held-out prompts" if result.heldout else ""
      plots.phase_heatmaps(rows, methods, axes[1], axes[0],
                           f"{title}: gain vs {baseline}{where} ({len(result.seeds)} seeds "
                           "per cell)", path)
      print(f"wrote {path}")
  else:
    prefix = FLAGS.figures or os.path.join(workdir, "curves")
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    for c, cell in enumerate(result.cells):
      path = f"{prefix}.png" if len(result.cells) == 1 else f"{prefix}_{c}.png"
      plots.learning_curves(result, c, path, f"{title} {report.cell_label(cell)}")
      print(f"wrote {path}")
  print(summary)
  lanes = len(result.cells) * len(result.seeds) * len(result.methods)
  print(f"{lanes} runs x {config.sim.steps} steps in {elapsed:.1f} s (compilation included); "
        f"wrote {workdir}/summary.md")


if __name__ == "__main__":
  app.run(main)
