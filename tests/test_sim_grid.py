"""A shrunk phase diagram end to end: grid runner, paired statistics, files, heat maps, the CLI."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs.sim import base
from focal.sim import components, grid, plots, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  c = base.get_config("smoke")
  c.methods = ("focal",)
  c.num_seeds = 6
  c.lanes_per_call = 8   # 2 cells x 6 seeds: one full call and one padded one
  return c


def test_shrunk_phase_diagram(tmp_path):
  config = _config()
  cells = {"noise": (0.0, 0.2), "group_size": (4,)}   # a knob lane axis and a static axis
  result = grid.run_grid(config, cells, progress=False)
  assert result.methods == ("weighted_sum", "focal")
  assert [c["noise"] for c in result.cells] == [0.0, 0.2]
  curves = {m: result.eval[m]["mean_reward_pct"] for m in result.methods}
  assert curves["focal"].shape == (2, 6, 3)
  # A seed fixes the world and the initial policy: every method starts from the same point,
  # and the cells differ only in the judge, so they start from the same point too.
  np.testing.assert_array_equal(curves["focal"][:, :, 0], curves["weighted_sum"][:, :, 0])
  np.testing.assert_array_equal(curves["focal"][0, :, 0], curves["focal"][1, :, 0])
  assert not np.array_equal(curves["focal"][0], curves["focal"][1])    # noise changes the run

  summary, by_baseline = report.write_all(result, str(tmp_path), config.baselines,
                                          config.plateau_share, config.thresholds, "smoke")
  rows = by_baseline["weighted_sum"]
  assert [(r["cell"]["noise"], r["method"]) for r in rows] == [(0.0, "focal"), (0.2, "focal")]
  for r in rows:
    gain = r["reward"]
    assert gain.n == 6 and gain.lo <= gain.mean <= gain.hi
    finals = (curves["focal"] - curves["weighted_sum"])[result.cells.index(r["cell"]), :, -1]
    assert gain.mean == pytest.approx(finals.mean(), abs=1e-4)
  assert "vs weighted_sum: Δ mean reward" in summary
  with open(tmp_path / "metrics.jsonl") as f:
    lines = [json.loads(line) for line in f]
  assert len(lines) == 2 * 2 * 3 and {"eval/mean_reward_pct", "method", "step"} <= set(lines[0])
  with open(tmp_path / "results.csv") as f:
    assert len(list(csv.DictReader(f))) == 2 * 2 * 6
  with open(tmp_path / "comparison.csv") as f:
    assert len(list(csv.DictReader(f))) == 2

  table = report.overview([str(tmp_path)], "weighted_sum").splitlines()
  assert len(table) == 3 and table[2].startswith(f"| {tmp_path.name} (2 cells) | focal |")
  classes = report.class_table(str(tmp_path)).splitlines()
  assert [line.split(" | ")[0] for line in classes[2:]] == ["| weighted_sum", "| focal"]

  png = tmp_path / "phase.png"
  plots.phase_heatmaps(rows, ["focal"], "noise", "group_size", "smoke", str(png))
  assert png.stat().st_size > 1000


def test_grid_axes_are_validated():
  with pytest.raises(ValueError, match="neither a knob"):
    components.grid_cells({"steps": (10,)})
  with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
    c = base.get_config("smoke")
    c.methods = ("nope",)
    components.method_names(c)


@pytest.mark.slow
def test_simulate_cli_writes_every_file(tmp_path):
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "experiments.simulate", "--config=configs/sim/base.py:smoke",
         f"--workdir={workdir}", "--compilation_cache="]
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env={**os.environ, "PYTHONPATH": ROOT})
  assert done.returncode == 0, done.stderr[-2000:]
  for name in ("config.json", "metrics.jsonl", "results.csv", "comparison.csv", "summary.md",
               "curves.png"):
    assert (workdir / name).exists(), name
