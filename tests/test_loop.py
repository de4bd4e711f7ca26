"""The training loop on the tiny preset: outputs, metric contract, resume, fail-fast errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import base
from focal import components, loop, report
from focal.data.synthetic_source import batch_indices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  c = base.get_config("tiny")
  c.warm_start.cache_dir = ""
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  config = tiny_config(**{"aggregator.name": "pow3r"})
  final = loop.run(config, workdir, progress=False)
  return config, workdir, final


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_run_writes_the_metric_contract(tiny_run):
  config, workdir, final = tiny_run
  rows = _rows(workdir)
  assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
  for key in ("train/reward_mean", "train/zero_variance_groups", "train/loss"):
    assert all(key in r for r in rows[1:]), key
  evals = [r for r in rows if "eval/mean_rubric_reward" in r]
  assert [r["step"] for r in evals] == [0, 2, 4]
  for key in ("eval/mean_rubric_reward", "eval/strict_completion", "eval/worst_category",
              "eval/polarization", "eval_sampled/mean_rubric_reward"):
    assert key in final, key
  assert any(k.startswith("eval/category/keywords/") for k in final)
  assert any(k.startswith("eval/criterion/keywords/") for k in final)
  assert any(k.startswith("train/pass_rate/keywords/") for k in rows[1])
  assert any(k.startswith("train/weight/keywords/") for k in rows[1])
  assert any(k.startswith("train/factor/keywords/") for k in rows[1])  # POW3R's factors
  assert 0.0 <= final["eval/polarization"] <= 1.0
  assert final["eval/polarization"] == pytest.approx(
      final["eval/best_category"] - final["eval/worst_category"])
  assert os.path.isdir(os.path.join(workdir, "tb")) and os.listdir(os.path.join(workdir, "tb"))
  assert json.load(open(os.path.join(workdir, "config.json")))["aggregator"]["name"] == "pow3r"
  table = report.category_table(final)
  assert "keywords/" in table and "strict completion" in table


def test_resume_continues_without_repeating_steps(tiny_run):
  config, workdir, _ = tiny_run
  more = tiny_config(**{"aggregator.name": "pow3r", "total_steps": 6})
  loop.run(more, workdir, progress=False)
  steps = [r["step"] for r in _rows(workdir)]
  assert steps == [0, 1, 2, 3, 4, 5, 6]
  # Running again with nothing left to do returns the last evaluation without training.
  final = loop.run(more, workdir, progress=False)
  assert final["step"] == 6


@pytest.mark.slow  # about 20-40 s; the default suite keeps under 15 min on CI
def test_train_seconds_count_the_whole_loop_across_a_restart(tmp_path, monkeypatch):
  ticks = iter(range(1000))  # a clock that reads 0, 1, 2, ...: one tick per read
  monkeypatch.setattr(loop, "_clock", lambda: float(next(ticks)))
  workdir = str(tmp_path)
  loop.run(tiny_config(total_steps=2, checkpoint_every=1), workdir, progress=False)
  # The second process's loop starts at step 2's checkpoint, 2 s into the run.
  loop.run(tiny_config(total_steps=4, checkpoint_every=1), workdir, progress=False)
  seconds = [r["train/seconds"] for r in _rows(workdir) if "train/seconds" in r]
  assert seconds == [1.0, 2.0, 3.0, 4.0]


def test_restart_before_the_first_checkpoint_logs_each_step_once(tmp_path):
  # Two steps are enough: the only checkpoint is the final one. POW3R, as tiny_run: the same
  # compiled programs (the aggregator does not matter to the log).
  config = tiny_config(total_steps=2, checkpoint_every=100, **{"aggregator.name": "pow3r"})
  workdir = str(tmp_path)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:  # a run killed at step 1
    for step in range(2):
      f.write(json.dumps({"step": step, "train/reward_mean": -1.0}) + "\n")
  loop.run(config, workdir, progress=False)
  rows = _rows(workdir)
  assert [r["step"] for r in rows] == [0, 1, 2]
  assert all(r.get("train/reward_mean") != -1.0 for r in rows)


def test_batch_indices_cover_each_epoch_once():
  n, b = 10, 4
  seen = np.concatenate([batch_indices(s, n, b, seed=3) for s in range(5)])
  assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
  np.testing.assert_array_equal(batch_indices(2, n, b, seed=3), seen[8:12])
  assert not np.array_equal(batch_indices(0, n, b, seed=4), seen[:4])


@pytest.mark.parametrize("field, value, message", [
    ("aggregator.name", "focal_loss", "unknown aggregator 'focal_loss'.*registered:.*pow3r"),
    ("task", "poetry", "unknown task 'poetry'.*keywords"),
    ("advantage.name", "ppo", "unknown advantage estimator 'ppo'.*gdpo"),
    ("model.scale", "huge", "unknown scale 'huge'"),
])
def test_bad_config_fails_fast(field, value, message):
  with pytest.raises(ValueError, match=message):
    components.validate(tiny_config(**{field: value}))


def test_cli_rejects_unknown_fields_and_names(tmp_path):
  def cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.train", "--config=configs/base.py:tiny",
                           f"--workdir={tmp_path}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # a hang guard
  out = cli("--config.aggregator.nmae=pow3r")
  assert out.returncode != 0 and "nmae" in out.stderr
  out = cli("--config.aggregator.name=focal_loss")
  assert out.returncode != 0 and "registered:" in out.stderr and "pow3r_focal" in out.stderr


def test_run_group_trains_each_seed_like_its_own_run(tmp_path):
  config = tiny_config(**{"aggregator.name": "pow3r", "total_steps": 2, "eval_every": 2})
  dirs = [str(tmp_path / f"s{s}") for s in (0, 1)]
  finals = loop.run_group(loop.seed_configs(config, [0, 1]), dirs, progress=False)
  alone = loop.run(tiny_config(**{"aggregator.name": "pow3r", "total_steps": 2,
                                     "eval_every": 2, "seed": 1}), str(tmp_path / "alone"),
                      progress=False)
  for d in dirs:
    assert [r["step"] for r in _rows(d)] == [0, 1, 2]
    assert json.load(open(os.path.join(d, "config.json")))["seed"] == int(d[-1])
  rows = _rows(dirs[1])
  alone_rows = _rows(str(tmp_path / "alone"))
  # Step 0 evaluates the same warm-started policy; seed 1's prompts are its own.
  assert rows[0]["eval/mean_rubric_reward"] == pytest.approx(alone_rows[0]["eval/mean_rubric_reward"],
                                                             abs=1e-3)
  assert set(rows[1]) == set(alone_rows[1]) - {"train/seconds"} | {"train/seconds"}
  assert finals[1]["step"] == alone["step"] == 2
  # Resuming a finished group trains nothing and returns the last evaluations.
  again = loop.run_group(loop.seed_configs(config, [0, 1]), dirs, progress=False)
  assert [a["step"] for a in again] == [2, 2]


@pytest.mark.slow  # about 20-40 s; the default suite keeps under 15 min on CI
def test_cli_trains_on_a_multi_device_mesh(tmp_path, tiny_run):
  """The tiny preset on a (2, 1, 2) mesh of 4 simulated devices, against the one-device run."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  workdir = tmp_path / "mesh"
  out = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config=configs/base.py:tiny",
       f"--workdir={workdir}", "--config.warm_start.cache_dir=", "--config.aggregator.name=pow3r",
       "--config.mesh.shape=(2,1,2)", "--config.total_steps=2"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = _rows(str(workdir))
  assert [r["step"] for r in rows] == [0, 1, 2]
  assert all(np.isfinite(rows[i]["train/loss"]) for i in (1, 2))
  # Same seed, same warm start: the greedy step-0 evaluation cannot depend on the mesh.
  one_device = _rows(tiny_run[1])[0]
  assert rows[0]["eval/mean_rubric_reward"] == pytest.approx(one_device["eval/mean_rubric_reward"],
                                                             abs=1e-4)


def _checkpointed_arrays(workdir, step):
  """The leaves of the train state saved at `step` (params, optimizer, aggregator, RNG...)."""
  import jax
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  tree = ocp.StandardCheckpointer().restore(path)
  as_numpy = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x)
  return [(key, as_numpy(x)) for key, x in jax.tree_util.tree_leaves_with_path(tree)]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, tiny_run):
  """2 steps, then `run` again to 4: every logged metric but wall time, and the final train
  state, equal the uninterrupted 4-step run's (the loop restores RNG, step, data position and
  aggregator state)."""
  config, full, _ = tiny_run
  part = str(tmp_path / "part")
  loop.run(tiny_config(**{"aggregator.name": "pow3r", "total_steps": 2}), part, progress=False)
  assert [r["step"] for r in _rows(part)] == [0, 1, 2]
  loop.run(config, part, progress=False)
  drop_time = lambda rows: [{k: v for k, v in r.items() if k != "train/seconds"}
                            for r in rows if r["step"] <= config.total_steps]
  assert drop_time(_rows(part)) == drop_time(_rows(full))
  resumed, uninterrupted = _checkpointed_arrays(part, 4), _checkpointed_arrays(full, 4)
  assert [k for k, _ in resumed] == [k for k, _ in uninterrupted] and len(resumed) > 10
  for (key, a), (_, b) in zip(resumed, uninterrupted):
    np.testing.assert_array_equal(a, b, err_msg=str(key))
