"""kill -9 at several points of a run, then the same command again: the result equals an
uninterrupted run's exactly (parameters bit for bit, every logged metric but wall time)."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from focal.rundir import RunDir

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "kill_runner.py")


def _run(workdir, kill="none", timeout=900):
  return subprocess.run([sys.executable, RUNNER, workdir, kill], capture_output=True, text=True,
                        timeout=timeout)


def _params(workdir):
  sys.path.insert(0, HERE)
  from kill_runner import config
  from focal import components
  setup = components.build(config(), progress=False)
  ckpt = RunDir(workdir).checkpointer(keep=None, async_save=False)
  try:
    state, meta = ckpt.restore(setup.state)
  finally:
    ckpt.close()
  return int(meta["step"]), [np.asarray(x) for x in jax.tree.leaves(state.params)]


def _rows(workdir):
  return [{k: v for k, v in r.items() if k != "train/seconds"} for r in RunDir(workdir).rows()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("whole"))
  out = _run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def _assert_same(workdir, uninterrupted):
  assert _rows(workdir) == _rows(uninterrupted)
  step, params = _params(workdir)
  step_ref, params_ref = _params(uninterrupted)
  assert step == step_ref == 5
  for x, y in zip(params, params_ref):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["before_save:3", "in_save:2", "in_save:5"])
def test_killed_and_rerun_equals_uninterrupted(tmp_path, uninterrupted, kill):
  workdir = str(tmp_path / "run")
  out = _run(workdir, kill)
  assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
  out = _run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  _assert_same(workdir, uninterrupted)


@pytest.mark.slow
def test_killed_at_a_random_moment_of_training_and_rerun_equals_uninterrupted(tmp_path,
                                                                             uninterrupted):
  workdir = str(tmp_path / "run")
  proc = subprocess.Popen([sys.executable, RUNNER, workdir], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 900
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 3:  # step 0, 1 and 2 logged
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  out = _run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  _assert_same(workdir, uninterrupted)
