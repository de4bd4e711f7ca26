"""kill -9, SIGTERM or SIGINT at several points of a run, then the same command again: the
result equals an uninterrupted run's exactly (parameters bit for bit, every logged metric but
wall time). A signal stops the run after its current step with a checkpoint of that step, the
lock released and exit status 75 (focal.preemption); on two processes both stop together."""
import os
import random
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from focal.preemption import EXIT_CODE
from focal.rundir import RunDir

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "kill_runner.py")


def _run(workdir, kill="none", *flags, timeout=900):
  return subprocess.run([sys.executable, RUNNER, workdir, kill, *flags], capture_output=True,
                        text=True, timeout=timeout)


def _params(workdir, lora: bool = False):
  sys.path.insert(0, HERE)
  from kill_runner import config
  from focal import components
  setup = components.build(config(lora=lora), progress=False)
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
def test_a_lora_run_killed_in_a_save_and_rerun_equals_uninterrupted(tmp_path):
  """Adapters on the warm-started base: kill -9 while step 2's checkpoint is written, rerun;
  the log and the adapters equal an uninterrupted run's (the base is rebuilt, not restored)."""
  whole, workdir = str(tmp_path / "whole"), str(tmp_path / "run")
  out = _run(whole, "none", "--lora")
  assert out.returncode == 0, out.stderr[-3000:]
  out = _run(workdir, "in_save:2", "--lora")
  assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
  out = _run(workdir, "none", "--lora")
  assert out.returncode == 0, out.stderr[-3000:]
  assert _rows(workdir) == _rows(whole)
  (step, params), (step_ref, params_ref) = _params(workdir, True), _params(whole, True)
  assert step == step_ref == 5 and len(params) == 2 * 7  # A and B of 7 projections
  for x, y in zip(params, params_ref):
    np.testing.assert_array_equal(x, y)


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


# Places a preemption may land: inside a training step (its rows not yet written) at a step
# drawn once (seeded) from the 5-step run, by SIGTERM and by SIGINT; inside the step-0
# evaluation (before the first step); and at a random moment seen from outside (below). The checkpoints are sparse (final step only), so the
# resumed run starts from the checkpoint the signal made the run write.
_DRAW = random.Random(34)
SIGNAL_POINTS = [f"SIGTERM:in_step:{_DRAW.randint(1, 4)}", f"SIGINT:in_step:{_DRAW.randint(1, 4)}",
                 "SIGTERM:in_eval:0"]


def _assert_stopped(out, workdir, step):
  assert out.returncode == EXIT_CODE, (out.returncode, out.stderr[-3000:])
  assert f"stopped by SIG" in out.stderr and f"after step {step}:" in out.stderr
  assert not os.path.exists(os.path.join(workdir, "lock"))  # released
  assert RunDir(workdir).checkpoint_steps()[-1] == step
  steps = [r["step"] for r in RunDir(workdir).rows()]
  assert steps == list(range(step + 1))  # the step in progress finished, rows included


@pytest.mark.slow
@pytest.mark.parametrize("kill", SIGNAL_POINTS)
def test_a_signal_checkpoints_the_current_step_and_the_rerun_equals_uninterrupted(
    tmp_path, uninterrupted, kill):
  workdir = str(tmp_path / "run")
  out = _run(workdir, kill, "--sparse")
  _assert_stopped(out, workdir, int(kill.split(":")[2]))
  out = _run(workdir, "none", "--sparse")
  assert out.returncode == 0, out.stderr[-3000:]
  _assert_same(workdir, uninterrupted)


@pytest.mark.slow
def test_sigterm_at_a_random_moment_and_rerun_equals_uninterrupted(tmp_path, uninterrupted):
  workdir = str(tmp_path / "run")
  proc = subprocess.Popen([sys.executable, RUNNER, workdir, "none", "--sparse"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = os.path.join(workdir, "metrics.jsonl")
  rows = random.Random(35).randint(2, 4)  # step 0's row, then some steps
  deadline = time.time() + 900
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= rows:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=900)
  if proc.returncode == EXIT_CODE:
    step = int(err.split("after step ")[1].split(":")[0])
    _assert_stopped(subprocess.CompletedProcess([], proc.returncode, "", err), workdir, step)
  out = _run(workdir, "none", "--sparse")
  assert out.returncode == 0, out.stderr[-3000:]
  _assert_same(workdir, uninterrupted)


@pytest.mark.slow
def test_two_processes_agree_on_the_step_when_one_of_them_is_signalled(tmp_path):
  workdir = str(tmp_path / "run")
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

  def start(kill, i):
    env = {**os.environ, "FOCAL_COORDINATOR": f"127.0.0.1:{port}", "FOCAL_NUM_PROCESSES": "2",
           "FOCAL_PROCESS_ID": str(i), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, RUNNER, workdir, kill, "--sparse", "--process", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  procs = [start("SIGTERM:in_step:2", i) for i in range(2)]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == EXIT_CODE, err[-3000:]
    assert "after step 2:" in err  # process 0 got no signal, and stopped after the same step
  assert "stopped by SIGTERM" in outs[1][1] and "another process" in outs[0][1]
  assert RunDir(workdir).checkpoint_steps() == [2]
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [start("none", i) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
  assert [r["step"] for r in RunDir(workdir).rows()] == [0, 1, 2, 3, 4, 5]
