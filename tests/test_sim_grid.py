"""A shrunk phase diagram end to end: grid runner, paired statistics, files, heat maps, the CLI."""
import csv
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs.sim import base
from focal.sim import components, grid, plots, report, tables

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

  table = tables.overview([str(tmp_path)], "weighted_sum").splitlines()
  assert len(table) == 3 and table[2].startswith(f"| {tmp_path.name} (2 cells) | focal |")
  classes = tables.class_table(str(tmp_path)).splitlines()
  assert [line.split(" | ")[0] for line in classes[2:]] == ["| weighted_sum", "| focal"]

  png = tmp_path / "phase.png"
  plots.phase_heatmaps(rows, ["focal"], "noise", "group_size", "smoke", str(png))
  assert png.stat().st_size > 1000


def test_hyper_parameter_axes_are_lanes_or_programs_and_equal_their_config_runs():
  """A traced hyper-parameter (Focal's gamma) runs as lanes of one program, one Focal
  branches on (ema: its state's structure) as one program per value; both equal runs
  with the value set in the config, and the baseline runs each knob setting once.
  (8 lanes a call, as in test_shrunk_phase_diagram: the baseline's program is the same one,
  compiled once for both.)"""
  config = _config()
  config.num_seeds = 3
  cells = {"aggregator.focal.gamma": (0.5, 2.0), "aggregator.focal.ema": (0.0, 0.5)}
  result = grid.run_grid(config, cells, progress=False)
  plans = {spec.aggregator_hparams: keys for spec, keys, _ in grid._programs(config, "focal",
                                                                             result.cells)}
  assert len(plans) == 2 and all(keys == ["aggregator.gamma"] for keys in plans.values())
  assert len(grid._programs(config, "weighted_sum", result.cells)) == 1
  curves = result.eval["focal"]["mean_reward_pct"]
  for c in (1, 2):   # one cell of each program: (gamma, ema) = (0.5, 0.5), (2.0, 0.0)
    cell = result.cells[c]
    alone = _config()
    alone.num_seeds = 3
    alone.aggregator.focal.gamma = cell["aggregator.focal.gamma"]
    alone.aggregator.focal.ema = cell["aggregator.focal.ema"]
    single = grid.run_grid(alone, None, progress=False)
    np.testing.assert_allclose(curves[c], single.eval["focal"]["mean_reward_pct"][0],
                               rtol=0, atol=1e-4)
    np.testing.assert_array_equal(result.eval["weighted_sum"]["mean_reward_pct"][c],
                                  single.eval["weighted_sum"]["mean_reward_pct"][0])
  assert not np.allclose(curves[0], curves[2])   # gamma moves the run
  assert not np.allclose(curves[0], curves[1])   # so does ema


def test_heldout_grid_reports_both_parts(tmp_path):
  """A grid with held-out prompts: the held-out part is compared (with strict completion),
  written with a `part` column and its own section, and drawn; a variant is a method.
  (POW3R as the baseline: tests/test_sim.py compiles that held-out program already.)"""
  config = _config()
  config.methods, config.baselines = ("focal_adv",), ("pow3r",)
  config.sim.num_heldout = 4
  config.num_seeds = config.lanes_per_call = 4
  result = grid.run_grid(config, {"policy_sharing": (0.0, 1.0)}, progress=False)
  assert set(result.heldout) == {"pow3r", "focal_adv"}
  assert result.heldout["focal_adv"]["mean_reward_pct"].shape == (2, 4, 3)
  summary, by_baseline = report.write_all(result, str(tmp_path), config.baselines,
                                          config.plateau_share, config.thresholds, "smoke")
  rows = by_baseline["pow3r"]
  assert all(r["part"] == "heldout" and "strict" in r for r in rows)
  tabular = next(r for r in rows if r["cell"]["policy_sharing"] == 0.0)
  assert (tabular["reward"].mean, tabular["strict"].mean) == (0.0, 0.0)   # nothing moved
  assert summary.index("## On the held-out prompts") < summary.index("## On the training prompts")
  assert "Δ strict completion (pts)" in summary
  with open(tmp_path / "comparison.csv") as f:
    parts = [r["part"] for r in csv.DictReader(f)]
  assert sorted(parts) == ["heldout"] * 2 + ["train"] * 2
  with open(tmp_path / "results.csv") as f:
    first = next(csv.DictReader(f))
  assert {"heldout/mean_reward_pct", "heldout/strict_completion", "heldout/steps_to_30",
          "mean_reward_pct", "steps_to_30"} <= set(first)
  with open(tmp_path / "metrics.jsonl") as f:
    assert "heldout/mean_reward_pct" in json.loads(f.readline())
  table = tables.overview([str(tmp_path)], "pow3r", part="heldout").splitlines()
  assert "Δ strict completion (pts)" in table[0] and len(table) == 3
  paired = tables.paired_table(str(tmp_path), "focal_adv", "pow3r", "heldout").splitlines()
  for line, row in zip(paired[2:], rows):   # any two methods, paired as the comparisons are
    assert line.split(" | ")[1] == row["reward"].format(2)
  levels = tables.levels_table(str(tmp_path), "heldout").splitlines()
  assert len(levels) == 2 + 2 * 2
  assert levels[2].split("|")[-2].strip() in ("+0.00", "-0.00")   # tabular: never moved
  png = tmp_path / "phase.png"
  plots.phase_heatmaps(rows, ["focal_adv"], "policy_sharing", "policy_sharing", "smoke",
                       str(png))
  assert png.stat().st_size > 1000


def test_variants_resolve_to_their_method_with_overrides():
  config = base.get_config("smoke")
  spec = components.method_spec(config, "focal_unofficial")
  hp = dict(spec.aggregator_hparams)
  assert (spec.aggregator, spec.estimator) == ("focal", "grpo")
  assert (hp["saturation"], hp["placement"], hp["gamma"], hp["eps"], hp["w_min"]) == \
      ("ema_headroom", "advantage", 1.0, 0.0, 0.0)
  assert hp["temperature"] == config.aggregator.focal.temperature   # the rest from the block
  spec = components.method_spec(config, "gd2po_snr")
  assert (spec.aggregator, spec.estimator) == ("weighted_sum", "gd2po")
  assert dict(spec.estimator_hparams)["variant"] == "snr"
  # A grid axis on Focal's gamma reaches its variants, over the variant's own value.
  assert components.method_hparams(config, "focal_unofficial", {"aggregator.focal.gamma": 2.0}) \
      == {"aggregator.gamma": 2.0}
  config.variants.bad = {"of": "focal", "gama": 1.0}
  with pytest.raises(ValueError, match="not hyper-parameters of 'focal'"):
    components.method_spec(config, "bad")
  config.variants.worse = {"of": "nope"}
  with pytest.raises(ValueError, match="must name an aggregator"):
    components.method_spec(config, "worse")


@pytest.mark.parametrize("name", sorted(
    f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", "sim")) if f.startswith("phase_")))
def test_phase_configs_give_valid_grids(name):
  module = importlib.import_module(f"configs.sim.{name}")
  for arg in (None, "smoke"):
    config, cells = module.get_config(arg), module.get_grid(arg)
    assert len(cells) == 2   # a phase diagram: rows and columns
    assert len(components.grid_cells(cells, config)) == np.prod([len(v) for v in cells.values()])
  with pytest.raises(ValueError, match="unknown grid"):
    module.get_grid("full")


def test_grid_axes_are_validated():
  config = _config()
  with pytest.raises(ValueError, match="gamma=-1.0 is outside"):
    components.grid_cells({"aggregator.focal.gamma": (1.0, -1.0)}, config)
  with pytest.raises(ValueError, match="has no focal.gama"):
    components.grid_cells({"aggregator.focal.gama": (1.0,)}, config)
  with pytest.raises(ValueError, match="string option"):
    components.grid_cells({"aggregator.focal.pitfall_mode": ("flip",)}, config)
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
