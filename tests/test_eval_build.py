"""Evaluating and exporting a saved run builds what they read, not the run's training: a judged
run evaluates with its training judge down and exports with no judge at all, and the evaluation
build allocates the parameters and nothing like an optimizer's moments."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from focal import components, eval_build, evaluation, loop
from focal.graders.judge import JudgeUnavailable
from focal.graders.openai_server import ChatServer
from focal.graders.rule_server import RuleJudge
from focal.models.pretrained import load_pretrained
from focal.rundir import EVAL_KEY, RunDir
from test_judged_loop import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Counted:
  """The rule judge, counting the requests it answers."""

  def __init__(self, judge):
    self.judge, self.served = judge, 0

  def __call__(self, body):
    self.served += 1
    return self.judge.answer(body)


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory):
  """A one-step run graded by one rule judge and evaluated by another; both are stopped once
  it has trained. Returns (workdir, the eval judge's port, the loop's final evaluation row)."""
  answers = [Counted(RuleJudge()) for _ in range(2)]
  train_judge, eval_judge = (ChatServer(a).start() for a in answers)
  try:
    config = tiny(steps=1, base_url=train_judge.url)
    config.warm_start.steps = 0
    for k, v in {"base_url": eval_judge.url, "model": "focal-rules", "max_retries": 0,
                 "backoff_s": 0.0}.items():
      config.eval.judge[k] = v
    workdir = str(tmp_path_factory.mktemp("judged"))
    loop.run(config, workdir, progress=False)
  finally:
    train_judge.close()
    eval_judge.close()
  rows = [r for r in RunDir(workdir).rows() if EVAL_KEY in r]
  assert rows[-1]["step"] == 1 and all(a.served for a in answers)
  return workdir, eval_judge.server_address[1], rows[-1]


def _evals(row):
  return {k: v for k, v in row.items() if k.startswith(("eval/", "eval_sampled/"))}


def _live_bytes(exclude: set[int]) -> int:
  return sum(a.nbytes for a in jax.live_arrays() if id(a) not in exclude)


def test_a_judged_run_evaluates_with_its_training_judge_down(judged_run):
  workdir, port, final = judged_run
  config = evaluation.load_config(workdir)
  with pytest.raises(JudgeUnavailable):  # the training build asks the stopped training judge
    components.build(config, progress=False)
  judge = Counted(RuleJudge())
  server = ChatServer(judge, port=port).start()  # the evaluation judge is back, at its address
  try:
    row = evaluation.evaluate_checkpoint(workdir)
  finally:
    server.close()
  assert judge.served > 0 and row["step"] == 1
  assert _evals(row) == _evals(final)  # the loop's own evaluation of that checkpoint
  config.eval.judge.base_url = ""  # evaluate with the training judge: that one must answer
  with pytest.raises(JudgeUnavailable, match="focal-rules"):
    evaluation.evaluate_checkpoint(workdir, config)


def test_exporting_a_judged_run_needs_no_judge(judged_run, tmp_path):
  workdir, _, _ = judged_run  # both judges are stopped
  out = str(tmp_path / "hf")
  cli = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={workdir}",
                        f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": REPO})
  assert cli.returncode == 0, cli.stderr[-3000:]
  setup = eval_build.build(evaluation.load_config(workdir), grader=False)
  assert setup.eval_grader is None
  params, step = eval_build.restore_params(setup, workdir)
  assert step == 1
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params, load_pretrained(out).params)


def test_evaluation_allocates_the_parameters_and_no_optimizer_state(judged_run):
  """Build: no array the size of the policy (a training build holds params plus AdamW's two
  float32 moments, 3x); restore: exactly the parameters' bytes."""
  workdir, _, _ = judged_run
  before = {id(a) for a in jax.live_arrays()}
  setup = eval_build.build(evaluation.load_config(workdir), grader=False)
  jax.tree.map(lambda x: isinstance(x, jax.ShapeDtypeStruct) or pytest.fail(repr(x)),
               setup.params)
  built = _live_bytes(before)
  params, _ = eval_build.restore_params(setup, workdir)
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  assert param_bytes > 500_000  # the tiny scale: 0.2M float32 parameters
  assert built < 0.05 * param_bytes
  assert _live_bytes(before) - built == param_bytes


def test_a_config_error_names_the_field_before_anything_is_read(judged_run):
  workdir, _, _ = judged_run
  config = evaluation.load_config(workdir)
  config.model.scale = "huge"
  with pytest.raises(ValueError, match="unknown scale 'huge'"):
    eval_build.build(config, grader=False)
