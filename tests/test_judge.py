"""The judge client against a real HTTP judge on 127.0.0.1: requests, conventions, arrays.

Fault cases (timeouts, rate limits, bad verdicts, dead endpoints) are in test_judge_faults.py.
"""
import time

import numpy as np
import pytest

from focal.graders.judge import AVOID_PREFIX, JudgeConfig, JudgeCriterion, split_prompt
from judge_servers import FaultServer, make_client as _make_client


@pytest.fixture
def server():
  s = FaultServer().start()
  yield s
  s.close()


def make_client(server, sleeps=None, **kw):
  return _make_client(server.url, sleeps, **{"temperature": 0.0, **kw})


def crit(mode, weight=5.0, **kw):
  return {"text": f"MODE={mode} says so", "weight": weight, "category": "safety", **kw}


def test_request_body_and_pow3r_prompt(server):
  with make_client(server, max_tokens=64, reasoning_effort="medium") as client:
    v = client.judge_one("Is it safe?", "an answer", crit("true", title="Dosing"))
    assert v.valid and v.criteria_met is True and v.score == 1.0 and v.attempts == 1
    assert v.explanation == "canned"
    v = client.judge_one("Is it safe?", "an answer", crit("false"))
    assert v.valid and v.criteria_met is False and v.score == 0.0
  body = server.bodies[0]
  assert body["model"] == "judge-1" and body["temperature"] == 0.0
  assert body["max_completion_tokens"] == 64 and body["reasoning_effort"] == "medium"
  prompt = body["messages"][0]["content"]
  assert body["messages"][0]["role"] == "user"
  assert "user: Is it safe?\n\n# Response\nan answer\n\n# Criterion\n" in prompt
  assert "Rubric: Dosing\nCategory: safety\nWeight: 5\nCriterion: MODE=true says so" in prompt
  assert "explanation" in prompt and prompt.index('"explanation"') < prompt.index('"criteria_met"')
  assert split_prompt(prompt)[1].response == "an answer"


def test_healthbench_prompt_keeps_the_original_sense(server):
  with make_client(server, template="healthbench") as client:
    v = client.judge_one([{"role": "user", "content": "hello"}], "hi", crit("true", -3.0))
    assert v.valid and v.score == 1.0  # met on a negative item: the bad behaviour is present
  prompt = server.bodies[0]["messages"][0]["content"]
  assert "user: hello\n\nassistant: hi\n\n# Rubric item\n[-3] MODE=true says so" in prompt
  assert AVOID_PREFIX not in prompt


@pytest.mark.parametrize("template, mode, reworded", [
    ("pow3r", "flip", True), ("pow3r", "signed", False), ("healthbench", "flip", False),
    ("healthbench", "signed", False)])
def test_pitfall_score_convention(server, template, mode, reworded):
  # The judge says "met" to everything: a score is 1 when the ORIGINAL criterion holds, so a
  # pitfall asked as avoidance and marked met (it avoided the pitfall) is stored as 0.
  with make_client(server, template=template) as client:
    pit = client.judge_one("q", "r", crit("true", -2.0), pitfall_mode=mode)
    good = client.judge_one("q", "r", crit("true", 2.0), pitfall_mode=mode)
  assert pit.criteria_met is True and pit.score == (0.0 if reworded else 1.0)
  assert good.score == 1.0
  prompt = server.bodies[0]["messages"][0]["content"]
  assert (AVOID_PREFIX + "MODE=true" in prompt) == reworded
  if reworded:
    assert "Weight: 2\n" in prompt  # a flipped pitfall carries |w|


def test_grade_arrays(server):
  criteria = [[crit("true"), crit("false", 3.0), crit("500", -2.0)], [crit("true", 1.0)]]
  mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
  responses = [["x", "y"], ["z", None]]
  conversations = ["user: hi", [{"role": "user", "content": "hello"}]]
  with make_client(server, max_retries=0) as client:
    scores, valid, stats = client.grade(conversations, responses, criteria, mask, "signed")
  assert scores.shape == valid.shape == (2, 2, 4) and scores.dtype == np.float32
  np.testing.assert_array_equal(valid[0], [[1, 1, 0, 0], [1, 1, 0, 0]])
  np.testing.assert_array_equal(scores[0], [[1, 0, 0, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(valid[1], [[1, 0, 0, 0], [0, 0, 0, 0]])
  assert scores[1, 0, 0] == 1.0
  assert (stats.slots, stats.no_response, stats.unique, stats.invalid) == (8, 1, 7, 3)
  assert stats.errors == {"HTTP 500": 2} and stats.requests == 7
  assert stats.invalid_frac == pytest.approx(3 / 8)
  prompts = [b["messages"][0]["content"] for b in server.bodies]
  assert not any("user: user: hi" in p for p in prompts)


def test_concurrency_limit_connection_reuse_and_dedup(server):
  with make_client(server, max_concurrency=2, timeout_s=2.0) as client:
    responses = [[f"r{i}" for i in range(8)] + ["r0", "r1", "r2"]]
    scores, valid, stats = client.grade(["q"], responses, [[crit("slow")]], [[True]])
    assert valid.all() and (scores == 1).all()
    assert stats.unique == 8 and server.counts["slow"] == 8
    client.grade(["q2"], responses, [[crit("slow")]], [[True]])
  assert server.max_in_flight == 2
  assert len(server.ports) <= 2  # 16 requests over at most max_concurrency kept-alive sockets


def test_idle_connection_closed_by_the_server_is_reopened_without_a_retry():
  server = FaultServer(idle_close_s=0.1).start()
  try:
    with make_client(server, max_concurrency=1, timeout_s=2.0) as client:
      assert client.judge_one("q", "a", crit("true")).valid
      time.sleep(0.4)  # the server drops the idle keep-alive connection
      v = client.judge_one("q", "b", crit("true"))
      assert v.valid and v.attempts == 1 and client.totals.retries == 0
  finally:
    server.close()
  assert len(server.ports) == 2


def test_cache_hits_send_no_request_and_are_keyed_by_model_and_template(server, tmp_path):
  cache = str(tmp_path / "verdicts.sqlite")
  args = ("q", "r", crit("true"))
  with make_client(server, cache_path=cache) as client:
    assert not client.judge_one(*args).cached
    again = client.judge_one(*args)
    assert again.cached and again.valid and again.score == 1.0
  assert server.counts["true"] == 1
  with make_client(server, cache_path=cache) as fresh:  # resumable: a new client, same file
    assert fresh.judge_one(*args).cached and server.counts["true"] == 1
  server.models = ("judge-1", "judge-2")
  with make_client(server, cache_path=cache, model="judge-2") as other:
    assert not other.judge_one(*args).cached and server.counts["true"] == 2
  with make_client(server, cache_path=cache, template="healthbench") as other:
    assert not other.judge_one(*args).cached and server.counts["true"] == 3
  with make_client(server, cache_path=cache) as client:  # flip vs signed on a pitfall: 2 keys
    pit = ("q", "r", crit("true", -1.0))
    assert client.judge_one(*pit, pitfall_mode="flip").score == 0.0
    assert client.judge_one(*pit, pitfall_mode="signed").score == 1.0
    assert client.judge_one(*pit, pitfall_mode="flip").cached
  assert server.counts["true"] == 5
  for _ in range(2):  # failures are not cached: asked again next time
    with make_client(server, cache_path=cache, max_retries=0) as client:
      assert not client.judge_one("q", "r", crit("500")).valid
  assert server.counts["500"] == 2


def test_criteria_are_checked_with_clear_errors(server):
  with make_client(server) as client:
    cases = [({"text": "", "weight": 1}, "criteria\\[0\\]\\[0\\].text"),
             ({"text": "t", "weight": True}, "weight must be a finite number"),
             ({"text": "t", "weight": float("nan")}, "weight must be a finite number"),
             ({"text": "t", "weight": 1, "points": 2}, "unknown field"),
             ({"text": "t", "weight": 1, "category": 1.5}, "category must be")]
    for bad, message in cases:
      with pytest.raises(ValueError, match=message):
        client.grade(["q"], [["r"]], [[bad]], [[True]])
    with pytest.raises(ValueError, match="pitfall_mode must be one of"):
      client.grade(["q"], [["r"]], [[crit("true")]], [[True]], pitfall_mode="flipped")
    with pytest.raises(ValueError, match="B=1 entries"):
      client.grade(["q", "q"], [["r"]], [[crit("true")]], [[True]])
    with pytest.raises(ValueError, match="marks slot 1"):
      client.grade(["q"], [["r"]], [[crit("true")]], [[True, True]])
    v = client.judge_one("q", "r", JudgeCriterion("MODE=true x", 1.0, "7"))
    assert v.valid and "Category: 7" in server.bodies[-1]["messages"][0]["content"]
  assert server.counts == {"true": 1}  # the bad calls failed before any request


def test_judge_config_fields():
  base = dict(base_url="http://127.0.0.1:1/v1", model="m")
  assert JudgeConfig(**base).api_key_env == "OPENAI_API_KEY"
  for field, value, message in [("base_url", "127.0.0.1:8000", "base_url must start"),
                                ("model", "", "model must name"),
                                ("template", "pow3", "template must be one of"),
                                ("max_concurrency", 0, "max_concurrency must be an int >= 1"),
                                ("timeout_s", 0, "timeout_s must be a finite number > 0"),
                                ("max_invalid_frac", 1.5, "max_invalid_frac must be in"),
                                ("max_retries", 1.0, "max_retries must be an int")]:
    with pytest.raises(ValueError, match=f"grader.judge.{message}"):
      JudgeConfig(**{**base, field: value})
  with pytest.raises(ValueError) as e:
    JudgeConfig(**base, api_key_env="sk-live-abcdef")
  assert "NAME of an environment variable" in str(e.value) and "sk-live" not in str(e.value)
  with pytest.raises(ValueError, match="unknown grader.judge field.*api_key"):
    JudgeConfig.from_mapping({**base, "api_key": "x"})
  assert JudgeConfig.from_mapping(base).model == "m"
