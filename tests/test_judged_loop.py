"""The loop with a host-side judge: a local rule server on 127.0.0.1 answers the judge's
criterion prompts with the synthetic suite's own rules, so the judged path must reproduce the
in-jit grader exactly; fault-injecting judges check the stops and the resumes."""
import os

import jax
import numpy as np
import pytest

from configs import base
from focal import components, loop
from focal.graders.judge import JudgeUnavailable
from focal.graders.openai_server import ChatError, ChatServer
from focal.graders.rule_server import RuleJudge
from focal.host_step import TooManyInvalid
from focal.rundir import RunDir


@pytest.fixture(scope="module")
def rule_judge():
  return RuleJudge()


class FlakyJudge:
  """The rule judge, answering HTTP 500 once `fail_after` requests have been served."""

  def __init__(self, judge, fail_after=None):
    self.judge, self.fail_after, self.served = judge, fail_after, 0

  def __call__(self, body):
    self.served += 1
    if self.fail_after is not None and self.served > self.fail_after:
      raise ChatError(500, "the judge fell over")
    return self.judge.answer(body)


@pytest.fixture
def server(rule_judge):
  servers = []

  def start(fail_after=None):
    s = ChatServer(FlakyJudge(rule_judge, fail_after)).start()
    servers.append(s)
    return s

  yield start
  for s in servers:
    s.close()


def tiny(steps=3, **judge):
  c = base.get_config("tiny")
  c.warm_start.cache_dir = ""
  c.total_steps = steps
  c.eval_every = steps
  c.checkpoint_every = 1
  c.aggregator.name = "weighted_sum"
  if judge:
    c.grader.kind = "judge"
    for k, v in {"model": "focal-rules", "max_retries": 0, "timeout_s": 30.0, "backoff_s": 0.0,
                 "max_invalid_frac": 0.0, **judge}.items():
      c.grader.judge[k] = v
  return c


def _params(workdir):
  run_dir = RunDir(workdir)
  setup = components.build(run_dir.read_config(), progress=False)
  ckpt = run_dir.checkpointer(keep=None, async_save=False)
  try:
    state, _ = ckpt.restore(setup.state)
  finally:
    ckpt.close()
  return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def _comparable(rows):
  drop = ("train/seconds", "train/policy_lag", "eval/invalid_verdict_frac",
          "eval_sampled/invalid_verdict_frac")
  return [{k: v for k, v in r.items() if k not in drop and not k.startswith("train/judge_")}
          for r in rows]


def assert_same_rows(a, b):
  """Verdicts (train pass rates) and evaluations equal; other train scalars within float32
  rounding: the fused step and learn_step are separate XLA programs, which may sum the same
  per-rollout values in another order (the parameters are compared bit for bit)."""
  a, b = _comparable(a), _comparable(b)
  assert [sorted(r) for r in a] == [sorted(r) for r in b]
  for ra, rb in zip(a, b):
    for key in ra:
      exact = not key.startswith("train/") or key.startswith("train/pass_rate/")
      if exact:
        assert ra[key] == rb[key], (ra["step"], key, ra[key], rb[key])
      else:
        assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra["step"], key)


@pytest.fixture(scope="module")
def judged(tmp_path_factory, rule_judge):
  """tiny() graded by a healthy rule judge over HTTP (a fresh verdict cache): the run the
  in-jit grader's run and an interrupted-then-resumed judged run must both reproduce. The judge
  stays up for the module: rebuilding the run to read its parameters asks it first."""
  tmp = tmp_path_factory.mktemp("judged")
  judge = ChatServer(FlakyJudge(rule_judge)).start()
  try:
    loop.run(tiny(base_url=judge.url, cache_path=str(tmp / "verdicts.sqlite")), str(tmp / "run"),
             progress=False)
    yield str(tmp / "run")
  finally:
    judge.close()


@pytest.mark.default_codegen  # the parameters are compared bit for bit across two programs
def test_judged_path_equals_the_in_jit_grader(tmp_path, judged):
  programmatic = str(tmp_path / "programmatic")
  loop.run(tiny(), programmatic, progress=False)
  a, b = RunDir(programmatic).rows(), RunDir(judged).rows()
  assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3]
  assert_same_rows(a, b)  # verdicts (pass rates), rewards, losses, evaluations
  assert all(r["train/policy_lag"] == 0.0 and r["train/judge_requests"] > 0 for r in b[1:])
  for x, y in zip(_params(programmatic), _params(judged)):
    np.testing.assert_array_equal(x, y)


def test_a_dead_endpoint_stops_the_run_before_training(tmp_path):
  config = tiny(base_url="http://127.0.0.1:9/v1", timeout_s=2.0)
  with pytest.raises(JudgeUnavailable, match=r"127\.0\.0\.1:9.*focal-rules"):
    loop.run(config, str(tmp_path / "run"), progress=False)
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_judge_dying_mid_run_stops_after_saving_and_the_rerun_resumes(tmp_path, server,
                                                                       judged):
  cache = str(tmp_path / "verdicts.sqlite")
  workdir = str(tmp_path / "run")
  uninterrupted = judged  # the same config, never stopped, its own verdict cache
  # The preflight and the step-0 evaluation take about 85 answers, a step at most 112.
  dying = server(fail_after=250)
  with pytest.raises(TooManyInvalid, match=r"step \d+: .* invalid .*grader.judge.max_invalid_frac"
                                           r".*errors by kind \(distinct requests\): HTTP 500: "
                                           r"\d+\. The run stopped before updating"):
    loop.run(tiny(base_url=dying.url, cache_path=cache), workdir, progress=False)
  saved = RunDir(workdir).checkpoint_steps()
  assert saved, "the stopped run saved the state its failed step started from"
  steps = [r["step"] for r in RunDir(workdir).rows()]
  assert steps == sorted(set(steps)) and max(steps) <= saved[-1]
  loop.run(tiny(base_url=server().url, cache_path=cache), workdir, progress=False)
  assert _comparable(RunDir(workdir).rows()) == _comparable(RunDir(uninterrupted).rows())
  for x, y in zip(_params(workdir), _params(uninterrupted)):
    np.testing.assert_array_equal(x, y)


def test_overlap_logs_a_one_step_policy_lag(tmp_path, server):
  config = tiny(base_url=server().url)
  config.grader.overlap = True
  loop.run(config, str(tmp_path / "run"), progress=False)
  lags = [r["train/policy_lag"] for r in RunDir(str(tmp_path / "run")).rows()[1:]]
  assert lags == [0.0, 1.0, 1.0]


def _refusing(body):
  return {"content": None, "refusal": "I will not grade this."}


def test_an_evaluation_judge_that_answers_nothing_valid_is_no_score(tmp_path, server):
  # It gave exit 0 and a 0.00 held-out score at every step: eval.judge.max_invalid_frac was
  # read by nothing.
  judge = ChatServer(_refusing, models=("refuser",)).start()
  try:
    config = tiny(steps=2, base_url=server().url)
    config.warm_start.steps = 0
    config.eval.judge.base_url, config.eval.judge.model = judge.url, "refuser"
    config.eval.judge.max_retries, config.eval.judge.backoff_s = 0, 0.0
    with pytest.raises(TooManyInvalid, match=r"step 0: 100.0% of the judge's verdicts are "
                                             r"invalid \(limit eval.judge.max_invalid_frac=0.05\); "
                                             r"errors by kind \(distinct requests\): refusal: \d+"):
      loop.run(config, str(tmp_path / "run"), progress=False)
  finally:
    judge.close()
  assert RunDir(str(tmp_path / "run")).rows() == []  # no row computed from a broken judge


def test_a_training_judge_dying_before_the_first_evaluation_writes_no_row(tmp_path, server):
  # It logged a step-0 evaluation of 0.0 before stopping (and a rerun appended a second one).
  config = tiny(steps=2, base_url=server(fail_after=1).url)  # the preflight, then HTTP 500s
  config.warm_start.steps = 0
  with pytest.raises(TooManyInvalid, match=r"step 0: .*eval.judge.max_invalid_frac.*HTTP 500"):
    loop.run(config, str(tmp_path / "run"), progress=False)
  assert RunDir(str(tmp_path / "run")).rows() == []
