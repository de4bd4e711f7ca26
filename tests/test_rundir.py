"""The run directory's owner: provenance, resume only under the same trajectory, one trainer at a
time, config.json rewritten only after a successful restore, and early config errors."""
import json
import os
import subprocess
import sys

import pytest

from focal import components, loop
from focal.checkpoint import CheckpointError
from focal.rundir import (ConfigMismatch, MetricsLost, RunDir, RunDirError, RunLocked,
                          trajectory_diff)
from conftest import xla_flags
from test_loop import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(**over):
  return tiny_config(**{"total_steps": 2, "eval_every": 2, "checkpoint_every": 2, **over})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  loop.run(tiny(), workdir, progress=False)
  return workdir


def _snapshot(workdir):
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      out[os.path.relpath(path, workdir)] = os.stat(path).st_mtime_ns
  return out


def test_config_json_records_provenance_and_reads_back_without_it(trained):
  saved = json.load(open(os.path.join(trained, "config.json")))
  prov = saved["provenance"]
  assert prov["packages"]["jax"] and prov["device_count"] >= 1 and prov["mesh_shape"] == [1, 1, 1]
  assert "provenance" not in RunDir(trained).read_config()


@pytest.mark.parametrize("field, value", [("aggregator.name", "pow3r"), ("seed", 7),
                                          ("model.scale", "small"), ("grpo.beta", 0.1),
                                          ("aggregator.focal.gamma", 1.0)])
def test_resuming_under_a_config_that_changes_the_trajectory_is_refused(trained, field, value):
  before = _snapshot(trained)
  with pytest.raises(ConfigMismatch, match=rf"{field}: .* -> {value!r}"):
    loop.run(tiny(**{field: value, "total_steps": 4}), trained, progress=False)
  assert _snapshot(trained) == before  # nothing written, config.json included


def test_fields_that_may_change_on_resume_are_accepted():
  saved = json.loads(tiny().to_json_best_effort())
  new = tiny(total_steps=10, eval_every=5, **{"eval.num_samples": 8, "mesh.shape": (1, 1, 1),
                                              "grader.judge.base_url": "http://other:1/v1"})
  assert trajectory_diff(saved, json.loads(new.to_json_best_effort())) == []
  saved["model"]["scale"] = "base"
  assert trajectory_diff(saved, json.loads(tiny().to_json_best_effort())) == [
      "model.scale: 'base' -> 'tiny'"]


def _never_build(*args, **kwargs):
  raise AssertionError("built the run before taking its directory")


def test_a_second_trainer_on_a_locked_run_directory_is_refused(tmp_path, monkeypatch):
  run_dir = RunDir(str(tmp_path))
  run_dir.acquire_lock()  # this process is alive: the lock is held
  try:
    # Refused before the build (it took 18 s of warm start and judge preflight to refuse).
    monkeypatch.setattr(components, "build", _never_build)
    with pytest.raises(RunLocked, match=rf"in use by pid {os.getpid()}"):
      loop.run(tiny(), str(tmp_path), progress=False)
  finally:
    run_dir.release_lock()
  assert not os.path.exists(run_dir.lock_path)


def test_a_workdir_that_is_a_file_or_cannot_be_written_is_a_clear_early_error(tmp_path,
                                                                             monkeypatch):
  monkeypatch.setattr(components, "build", _never_build)
  a_file = tmp_path / "notes.txt"
  a_file.write_text("not a run")
  with pytest.raises(RunDirError, match=rf"workdir {a_file} is a file, not a directory"):
    loop.run(tiny(), str(a_file), progress=False)
  # Read-only: a directory root cannot write in either (sysfs; chmod does not stop root).
  unwritable = "/sys/focal_test_run" if os.path.isdir("/sys") else None
  if unwritable is None:
    pytest.skip("no /sys to stand for a read-only directory")
  with pytest.raises(RunDirError, match=rf"workdir {unwritable} cannot be written "
                                        r"\(PermissionError: .*\); pass a writable"):
    loop.run(tiny(), unwritable, progress=False)
  assert open(a_file).read() == "not a run"


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True).stdout.strip()
  run_dir = RunDir(str(tmp_path))
  with open(run_dir.lock_path, "w") as f:
    json.dump({"pid": int(dead), "host": os.uname().nodename}, f)
  run_dir.acquire_lock()
  assert json.load(open(run_dir.lock_path))["pid"] == os.getpid()
  run_dir.release_lock()


def test_a_failed_restore_leaves_the_saved_config_alone(tmp_path, trained):
  workdir = _copy(trained, tmp_path)  # a finished 2-step run (training one took a run's time)
  config_before = open(os.path.join(workdir, "config.json")).read()
  for step in RunDir(workdir).checkpoint_steps():  # every checkpoint damaged: nothing to restore
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(step))):
      for name in files:
        open(os.path.join(root, name), "wb").close()
  with pytest.raises(CheckpointError):
    loop.run(tiny(total_steps=4), workdir, progress=False)
  assert open(os.path.join(workdir, "config.json")).read() == config_before


def test_truncating_metrics_keeps_the_checkpoint_step_and_drops_only_later_rows(tmp_path):
  # A run resumed from checkpoint step 2 keeps step 2's rows (train and eval) and drops 3 and 4.
  run_dir = RunDir(str(tmp_path))
  rows = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}, {"step": 2, "eval/x": 0.5},
          {"step": 3, "loss": 3.0}, {"step": 4, "loss": 4.0}]
  with open(run_dir.metrics_path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  run_dir.truncate_metrics(2)
  assert run_dir.rows() == rows[:3]
  run_dir.truncate_metrics(0)
  assert run_dir.rows() == []


@pytest.mark.parametrize("field, value, message", [
    ("keep_checkpoints", 0, "keep_checkpoints must be an integer >= 1"),
    ("data.prompts_per_step", 0, "prompts_per_step must be >= 1"),
    ("grpo.group_size", 1, "grpo.group_size must be >= 2"),
    ("grpo.temperature", 0.0, "grpo.temperature must be > 0"),
    ("grpo.num_minibatches", 3, "num_minibatches=3 does not divide the 16 rollouts"),
    ("optimizer.learning_rate", float("nan"), "optimizer.learning_rate must be a finite"),
    ("eval.num_samples", 0, "num_samples >= 1"),
    ("grpo.nonfinite", "ignore", "nonfinite must be one of"),
    ("advantage.sa_mrpo.gamma", -1.0, "gamma=-1.0 is outside"),
    ("warm_start.steps", -1, r"warm_start.steps must be an integer >= 0 \(0 = no warm start\)"),
    # The tiny preset trains on 8 prompts: 20 per step drew 1,000 groups from 8 prompts.
    ("data.prompts_per_step", 20, r"prompts_per_step=20 is larger than the training set \(8 "
                                  r"prompts in the synthetic task 'keywords'\)"),
])
def test_bad_configs_fail_before_any_work_naming_the_field(tmp_path, field, value, message):
  config = tiny(**{field: value, "advantage.name": "sa_mrpo"})
  with pytest.raises(ValueError, match=message):
    loop.run(config, str(tmp_path / "run"), progress=False)
  assert not os.path.exists(tmp_path / "run")


def test_a_mesh_that_does_not_divide_the_batch_fails_before_the_warm_start():
  code = ("from configs import base; from focal import components\n"
          "c = base.get_config(); c.mesh.shape = (1, 8, 1)\n"
          "components.validate(c)\n")
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices=8))
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode != 0
  assert "prompts_per_step=12 is not a multiple of the mesh's data x fsdp = 1 x 8 = 8" in out.stderr


def test_a_corrupt_saved_config_is_a_clear_error(tmp_path, trained):
  import shutil
  workdir = str(tmp_path / "copy")
  shutil.copytree(trained, workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write("{not json")
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    RunDir(workdir).check_resume(tiny())
  out = subprocess.run([sys.executable, "-m", "experiments.eval", f"--workdir={workdir}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "config.json is not valid JSON" in out.stderr
  assert "Traceback" not in out.stderr


def _copy(trained, tmp_path, name="copy"):
  import shutil
  workdir = str(tmp_path / name)
  shutil.copytree(trained, workdir)
  return workdir


def test_checkpoints_record_the_config_and_the_log_they_follow(trained):
  meta = RunDir(trained).latest_meta()[1]
  assert meta["config"]["seed"] == 0 and meta["logged_steps"] == 3  # steps 0, 1 and 2
  assert meta["last_logged_step"] == 2


@pytest.mark.parametrize("field, edited", [("seed", 7), ("optimizer.learning_rate", 0.1)])
def test_a_hand_edited_config_json_resumed_through_saved_py_is_refused(tmp_path, trained,
                                                                       field, edited):
  from configs import saved
  workdir = _copy(trained, tmp_path)
  path = os.path.join(workdir, "config.json")
  data = json.load(open(path))
  node = data
  *parents, last = field.split(".")
  for p in parents:
    node = node[p]
  was, node[last] = node[last], edited
  json.dump(data, open(path, "w"))
  config = saved.get_config(workdir)  # what --config=configs/saved.py:DIR loads
  config.total_steps = 4
  before = _snapshot(workdir)
  with pytest.raises(ConfigMismatch, match=rf"config.json differs from the config its checkpoint "
                                           rf"step 2 was trained under \({field}: {was!r} -> "
                                           rf"{edited!r}; checkpoint -> now\): was config.json "
                                           r"edited by hand"):
    loop.run(config, workdir, progress=False)
  assert _snapshot(workdir) == before


@pytest.mark.parametrize("damage", ["deleted", "truncated", "cut mid-line"])
def test_a_lost_metrics_log_is_refused_naming_what_is_gone(tmp_path, trained, damage,
                                                          monkeypatch):
  workdir = _copy(trained, tmp_path)
  path = os.path.join(workdir, "metrics.jsonl")
  lines = open(path).readlines()
  if damage == "deleted":
    os.remove(path)
  elif damage == "truncated":
    open(path, "w").writelines(lines[:1])
  else:  # a row cut short (a disk that filled up): the last row is unreadable, so it is lost
    open(path, "w").writelines(lines[:2] + [lines[2][:40]])
  what = {"deleted": "is gone", "truncated": "holds rows for 1 of them",
          "cut mid-line": "holds rows for 2 of them"}[damage]
  monkeypatch.setattr(components, "build", _never_build)  # refused before anything is built
  with pytest.raises(MetricsLost, match=rf"metrics.jsonl {what}: the run had logged 3 steps up "
                                        r"to its checkpoint step 2 \(the last at step 2\)"):
    loop.run(tiny(total_steps=4), workdir, progress=False)
  RunDir(workdir).check_resume(tiny(total_steps=4), allow_missing_rows=True)  # the opt-in


def test_rows_are_written_once_per_step_whatever_reruns_them(tmp_path):
  from focal.rundir import read_rows
  from focal.tracking import JsonlWriter
  path = str(tmp_path / "metrics.jsonl")
  writer = JsonlWriter(path)
  for row in ({"step": 0, "eval/x": 0.0}, {"step": 1, "train/y": 1.0}):
    writer.write(row)
  again = JsonlWriter(path)  # a rerun that repeats step 0 (a stop before the first step)
  again.write({"step": 0, "eval/x": 0.5})
  assert read_rows(path) == [{"step": 0, "eval/x": 0.5}, {"step": 1, "train/y": 1.0}]
  # A row cut short at the end (a process killed while writing it) is left out; a damaged row
  # before it is an error naming the file and line, never a silent gap.
  with open(path, "a") as f:
    f.write('{"step": 2, "tra')
  assert [r["step"] for r in read_rows(path)] == [0, 1]
  with open(path, "a") as f:
    f.write('\n{"step": 3}\n')
  with pytest.raises(ValueError, match=rf"{path}:3: not a JSON row"):
    read_rows(path)
