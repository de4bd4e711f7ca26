"""The sweep runner on the smoke grid: trains, skips finished runs, writes tables and plots."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest

from configs.paper import focal as focal_paper
from configs.paper import pow3r as pow3r_paper
from focal import report, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_paper_configs_select_their_aggregator_and_recipe():
  c = pow3r_paper.get_config()
  assert c.aggregator.name == "pow3r" and c.grpo.group_size == 16 and c.grpo.beta == 0.1
  assert c.optimizer.grad_clip == 0.5 and c.optimizer.weight_decay == 0.0
  assert focal_paper.get_config().aggregator.name == "focal"
  full = focal_paper.get_sweep("full")
  assert len(full) == 4 * 6 * 3 * 3
  assert len({sweep.run_name(o) for o in full}) == len(full)
  assert focal_paper.get_config("full").vmap_seeds and not focal_paper.get_config().vmap_seeds


def test_full_grid_is_scale_major_and_settings_are_contiguous():
  full = focal_paper.get_sweep("full")
  assert [o["model"] for o in full] == ["tiny"] * 72 + ["small"] * 72 + ["base"] * 72
  settings = [(o["task"], o["model"]) for o in full]
  starts = [i for i, s in enumerate(settings) if i == 0 or settings[i - 1] != s]
  assert len(starts) == 18  # each setting's 4 aggregators x 3 seeds sit together


def test_only_selects_a_slice_and_rejects_what_the_grid_lacks():
  grid = focal_paper.get_sweep("full")
  only = sweep.parse_only(["model=tiny", "task=keywords,digitsum", "seed=0"])
  assert only == {"model": {"tiny"}, "task": {"keywords", "digitsum"}, "seed": {"0"}}
  picked = sweep.select(grid, only)
  assert len(picked) == 2 * 4 and all(o["model"] == "tiny" and o["seed"] == 0 for o in picked)
  assert sweep.select(grid, {}) == grid
  with pytest.raises(ValueError, match="FIELD=VALUE"):
    sweep.parse_only(["model"])
  with pytest.raises(ValueError, match="sets no 'scale'"):
    sweep.select(grid, sweep.parse_only(["scale=tiny"]))
  with pytest.raises(ValueError, match=r"\['huge'\] not in the grid"):
    sweep.select(grid, sweep.parse_only(["model=huge"]))


def _write_run(run_dir, last_step, total_steps):
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
    for step in range(0, last_step + 1, 2):
      f.write(json.dumps({"step": step, "eval/mean_rubric_reward": 40.0 + step,
                          "eval/category/t/c": 0.1 * step}) + "\n")
      if step:
        f.write(json.dumps({"step": step, "train/seconds": 1.5 * step}) + "\n")


def test_report_counts_only_finished_runs(tmp_path):
  config = focal_paper.get_config("smoke")
  config.total_steps = 4
  grid = [{"aggregator.name": a, "task": t, "seed": s}
          for t in ("keywords", "digitsum") for a in ("weighted_sum", "focal") for s in (0, 1)]
  configs = [(o, sweep.apply_overrides(config, o)) for o in grid]
  for o in grid:  # keywords all finished; digitsum's focal seed 1 stopped at step 2
    unfinished = o["task"] == "digitsum" and o["aggregator.name"] == "focal" and o["seed"] == 1
    _write_run(str(tmp_path / sweep.run_name(o)), 2 if unfinished else 4, 4)
  summary = sweep.write_report(configs, str(tmp_path))
  assert summary.startswith("Finished: 7 of 8 runs; 1 of 2 (task, model) settings complete")
  rows = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert len(rows) == 7 and all(r["step"] == "4" for r in rows)
  assert all(r["train_seconds"] == "6.0" for r in rows)  # the loop's time at the last step
  for png in ("category_curves.png", "polarization.png", "gaps.png"):
    assert os.path.getsize(tmp_path / png) > 1000
  assert "Shared starts: at every (task, model, seed)" in summary and "Warning" not in summary
  # A grid with one aggregator has nothing to compare: no gaps plot, and no crash.
  alone = [(o, c) for o, c in configs if o["aggregator.name"] == "weighted_sum"]
  os.remove(tmp_path / "gaps.png")
  summary = sweep.write_report(alone, str(tmp_path))
  assert "gaps.png" not in summary and not os.path.exists(tmp_path / "gaps.png")


def test_a_sweep_with_nothing_to_report_says_so_and_claims_no_file(tmp_path):
  # It printed "wrote WORKDIR/summary.md" and wrote nothing.
  with pytest.raises(sweep.EmptyGrid, match="grid is empty"):
    sweep.run_sweep(focal_paper.get_config("smoke"), [], str(tmp_path / "empty"))
  assert not os.path.exists(tmp_path / "empty")
  workdir = str(tmp_path / "sweep")
  out = subprocess.run([sys.executable, "-m", "experiments.sweep", "--report_only",
                        "--config=configs/paper/focal.py:smoke", f"--workdir={workdir}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"nothing written to {workdir}: no run of the grid has finished" in out.stdout
  assert "wrote" not in out.stdout and os.listdir(workdir) == []


def test_apply_overrides_rejects_unknown_fields():
  c = focal_paper.get_config("smoke")
  with pytest.raises(ValueError, match="no field 'lamda'"):
    sweep.apply_overrides(c, {"aggregator.pow3r.lamda": 0.3})
  assert sweep.apply_overrides(c, {"aggregator.pow3r.lam": 0.3}).aggregator.pow3r.lam == 0.3
  assert c.aggregator.pow3r.lam == 0.5  # the original is left alone


@pytest.mark.slow
def test_smoke_sweep_end_to_end(tmp_path):
  workdir = str(tmp_path / "sweep")
  cmd = [sys.executable, "-m", "experiments.sweep", "--config=configs/paper/focal.py:smoke",
         f"--workdir={workdir}", "--config.warm_start.cache_dir=", "--config.total_steps=2",
         "--config.eval_every=1"]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  # Each grid point shows a step bar naming what it trains, and a line when it finishes.
  assert "train keywords/tiny weighted_sum" in out.stderr
  finished = [l for l in out.stdout.splitlines() if l.startswith("finished agg=")]
  assert len(finished) == 4 and all("held-out mean rubric reward" in l for l in finished)
  rows = list(csv.DictReader(open(os.path.join(workdir, "results.csv"))))
  assert len(rows) == 4 and {r["aggregator.name"] for r in rows} == {"weighted_sum", "category_balanced"}
  summary = open(os.path.join(workdir, "summary.md")).read()
  assert "mean ± std over seeds" in summary and "Steps to reach" in summary
  for png in ("category_curves.png", "polarization.png"):
    assert os.path.getsize(os.path.join(workdir, png)) > 1000
  # A second call finds every run finished and trains nothing.
  mtimes = {d: os.path.getmtime(os.path.join(workdir, d, "metrics.jsonl"))
            for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d))}
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  for d, t in mtimes.items():
    assert os.path.getmtime(os.path.join(workdir, d, "metrics.jsonl")) == t


def _fake_rows():
  rows = []
  for task in ("a", "b"):
    for agg, base_value in (("weighted_sum", 50.0), ("category_balanced", 52.0), ("focal", 55.0),
                            ("pow3r", 51.0)):
      for seed in (0, 1):
        bump = 10.0 if (task == "b" and agg == "weighted_sum") else 0.0
        rows.append({"task": task, "model": "tiny", "aggregator.name": agg, "seed": seed,
                     "eval/mean_rubric_reward": base_value + bump + seed,
                     "eval/strict_completion": 0.1, "eval/worst_category": 0.2,
                     "eval/polarization": 0.5, "eval_sampled/mean_rubric_reward": 1.0,
                     "eval_sampled/strict_completion": 0.1,
                     "steps_to_45": 10 if agg == "focal" else 40, "steps_to_50": ""})
  return rows


def test_wins_counts_against_the_best_baseline():
  rows = _fake_rows()
  won, total, lines = report.wins(rows, "focal", report.STATIC, "eval/mean_rubric_reward")
  # Task a: focal 55.5 beats the best static 52.5; task b: weighted sum 60.5 beats focal.
  assert (won, total) == (1, 2)
  assert "win" in lines[0] and "loss" in lines[1]
  # Paired by seed: focal - category_balanced is 3.0 for both seeds in task a.
  assert "| +3.000 ± 0.000 | win |" in lines[0]
  won, total, _ = report.wins(rows, "pow3r", ("category_balanced",), "eval/mean_rubric_reward")
  assert (won, total) == (0, 2)


def test_wins_reports_ties_and_paired_gaps():
  rows = [{"task": "t", "model": "tiny", "aggregator.name": a, "seed": s, "m": v}
          for a, vals in (("focal", (0.0, 0.0)), ("weighted_sum", (0.0, 0.0))) for s, v in zip((0, 1), vals)]
  won, total, lines = report.wins(rows, "focal", ("weighted_sum",), "m")
  assert (won, total) == (0, 1) and lines[0].endswith("| tie |")
  section_rows = [dict(r, **{"eval/mean_rubric_reward": r["m"], "eval/task_worst_category": 0.0})
                  for r in rows]
  section = report.wins_section(section_rows)
  assert "(mean rubric reward): 0 wins out of 1 (1 ties)" in section


def test_wins_treats_float32_rounding_as_a_tie():
  # Seed values of a real grid (arith, small): the same held-out scores, summed in another
  # order in float32, so the means differ in the 7th digit.
  values = {"pow3r": (41.66666030883789, 40.416656494140625, 41.66665267944336),
            "category_balanced": (40.83332443237305, 41.66666030883789, 41.24999237060547)}
  rows = [{"task": "t", "model": "tiny", "aggregator.name": a, "seed": s, "m": v}
          for a, vals in values.items() for s, v in enumerate(vals)]
  assert report.wins(rows, "pow3r", ("category_balanced",), "m")[2][0].endswith("| tie |")
  # A difference of one held-out verdict (far above rounding) still decides.
  bumped = [dict(r, m=r["m"] + 0.01) if r["aggregator.name"] == "pow3r" else r for r in rows]
  won, total, lines = report.wins(bumped, "pow3r", ("category_balanced",), "m")
  assert (won, total) == (1, 1) and lines[0].endswith("| win |")
  lowered = [dict(r, m=r["m"] - 0.01) if r["aggregator.name"] == "pow3r" else r for r in rows]
  assert report.wins(lowered, "pow3r", ("category_balanced",), "m")[2][0].endswith("| loss |")


def test_paired_gap_removes_the_noise_seeds_share():
  a = [{"seed": s, "m": v} for s, v in ((0, 10.0), (1, 20.0), (2, 30.0))]
  b = [{"seed": s, "m": v - 1.0} for s, v in ((0, 10.0), (1, 20.0), (2, 30.0))]
  assert report.paired_gap(a, b, "m") == pytest.approx((1.0, 0.0))
  unpaired = [{"seed": s, "m": v} for s, v in ((5, 9.0), (6, 19.0), (7, 29.0))]
  gap, sd = report.paired_gap(a, unpaired, "m")
  assert gap == pytest.approx(1.0) and sd == pytest.approx(math.hypot(10.0, 10.0))


def test_steps_table_reports_speedups_and_never():
  table = report.steps_table(_fake_rows(), thresholds=(45.0, 50.0))
  focal_line = next(l for l in table.splitlines() if "| a | tiny | focal |" in l)
  assert "10 (2/2) ×4.0" in focal_line and "never" in focal_line


def test_gain_steps_table_measures_each_task_on_its_own_scale():
  def run(agg, seed, start, curve):
    steps = [0, 50, 100, 150]
    return {"task": "t", "model": "tiny", "aggregator.name": agg, "seed": seed,
            "start/eval/mean_rubric_reward": start, "eval/mean_rubric_reward": curve[-1],
            "_curve": (steps, [start] + curve)}
  rows = [run("weighted_sum", 0, 10.0, [12.0, 15.0, 20.0]),  # reference gain: mean final 20 ...
          run("weighted_sum", 1, 10.0, [11.0, 14.0, 20.0]),  # ... minus mean start 10 = 10 points
          run("focal", 0, 10.0, [15.0, 20.0, 20.0]),
          run("focal", 1, 10.0, [16.0, 17.0, 18.0])]
  table = report.gain_steps_table(rows, fractions=(0.5, 1.0))
  lines = table.splitlines()
  # weighted sum reaches +5 at step 100 (15 >= 15) in seed 0 and step 150 in seed 1 (14 < 15);
  # +10 at step 150 in both. Focal: +5 at step 50 in both; +10 at step 100 in seed 0 only.
  assert lines[3] == "| t | tiny | 10.0 | weighted_sum | 125 (2/2) | 150 (2/2) |"
  assert lines[2] == "| t | tiny | 10.0 | focal | 50 (2/2) ×2.5 | 100 (1/2) ×1.5 |"
  flat = [dict(r, **{"eval/mean_rubric_reward": 9.0}) if r["aggregator.name"] == "weighted_sum"
          else r for r in rows]
  assert "(no gain to measure)" in report.gain_steps_table(flat)


def test_signal_table_reports_start_and_final_shares_over_seeds():
  rows = [{"task": "a", "model": "tiny", "aggregator.name": "focal",
           "start/eval/mean_rubric_reward": 30.0, "eval/mean_rubric_reward": 40.0 + d,
           "start/eval_sampled/dead_share": 0.5, "eval_sampled/dead_share": d,
           "start/eval_sampled/saturated_share": 0.1, "eval_sampled/saturated_share": 0.2}
          for d in (0.2, 0.4)]
  line = report.signal_table(rows).splitlines()[-1]
  assert line == "| a | tiny | focal | 30.0 → 40.3 | 0.500 → 0.300 | 0.100 → 0.200 |"


def test_task_polarization_groups_categories_by_task():
  row = {"eval/category/a/x": 0.2, "eval/category/a/y": 1.0, "eval/category/b/z": 0.5,
         "eval/category/b/w": 0.6, "eval/mean_rubric_reward": 10.0}
  worst, spread = report.task_polarization(row)
  assert worst == pytest.approx((0.2 + 0.5) / 2)
  assert spread == pytest.approx((0.8 + 0.1) / 2)


def test_start_mismatches_flags_seeds_trained_from_different_warm_starts():
  def run(agg, seed, start, dead=0.25):
    return {"task": "repeat", "model": "base", "aggregator.name": agg, "seed": seed,
            "start/eval/mean_rubric_reward": start, "start/eval_sampled/dead_share": dead,
            "start/eval_sampled/saturated_share": float("nan")}
  rows = [run("weighted_sum", 0, 41.66666030883789), run("pow3r", 0, 41.66665267944336),  # f32 rounding
          run("weighted_sum", 1, 31.770837783813477), run("pow3r", 1, 33.07292175292969),
          run("weighted_sum", 2, 35.0), run("pow3r", 2, 35.0, dead=0.3)]
  assert report.start_mismatches(rows) == [
      "repeat/base seed 1: step-0 reward pow3r 33.07, weighted_sum 31.77",
      "repeat/base seed 2: step-0 reward pow3r 35.00, weighted_sum 35.00"]
  assert report.start_mismatches(rows[:2]) == []


def test_report_warns_when_a_seed_trained_from_another_warm_start(tmp_path):
  config = focal_paper.get_config("smoke")
  config.total_steps = 4
  grid = [{"aggregator.name": a, "task": "keywords", "seed": 0} for a in ("weighted_sum", "focal")]
  for o in grid:
    _write_run(str(tmp_path / sweep.run_name(o)), 4, 4)
  path = tmp_path / sweep.run_name(grid[1]) / "metrics.jsonl"
  rows = [json.loads(line) for line in open(path)]
  rows[0]["eval/mean_rubric_reward"] = 38.5  # focal's step 0: another warm start
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  summary = sweep.write_report([(o, sweep.apply_overrides(config, o)) for o in grid], str(tmp_path))
  assert ("**Warning: different starts.**" in summary
          and "keywords/tiny seed 0: step-0 reward focal 38.50, weighted_sum 40.00" in summary)


def test_clear_of_noise_names_only_gaps_beyond_their_paired_std():
  # Setting a: focal is 5.0 above weighted sum on both seeds (std 0: a clear win).
  # Setting b: weighted sum is 10 above focal on seed 0 and 5 above on seed 1, while
  # focal's mean is 4 below: paired gap -7.5 ± 3.5 (clear loss). Setting c: gaps +4 and
  # -2 (mean +1 ± 4.2: a win inside the noise).
  rows = []
  for task, focal, ws in (("a", (55.0, 56.0), (50.0, 51.0)), ("b", (50.0, 55.0), (60.0, 60.0)),
                          ("c", (54.0, 50.0), (50.0, 52.0))):
    for agg, vals in (("focal", focal), ("weighted_sum", ws)):
      rows += [{"task": task, "model": "tiny", "aggregator.name": agg, "seed": s, "m": v}
               for s, v in enumerate(vals)]
  cs = report.comparisons(rows, "focal", ("weighted_sum",), "m")
  assert [c["result"] for c in cs] == ["win", "loss", "win"]
  assert cs[1]["gap"] == pytest.approx(-7.5) and cs[1]["gap_std"] == pytest.approx(math.sqrt(12.5))
  assert report.clear_of_noise(cs) == (
      "Clear of seed noise (|paired gap| > its std): 1 of 2 wins (a/tiny), 1 of 1 losses (b/tiny).")
  # One seed has no spread: its gap is never called clear, however large.
  single = [r for r in rows if r["seed"] == 0]
  assert report.clear_of_noise(report.comparisons(single, "focal", ("weighted_sum",), "m")) == (
      "Clear of seed noise (|paired gap| > its std): 0 of 2 wins, 0 of 1 losses.")
  section = report.wins_section([dict(r, **{"eval/mean_rubric_reward": r["m"],
                                           "eval/task_worst_category": 0.0}) for r in rows])
  assert "1 of 2 wins (a/tiny), 1 of 1 losses (b/tiny)" in section
