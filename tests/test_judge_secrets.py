"""The judge's API key never leaks (issue 34): not through a name check that takes a key for a
name, nor config.json, an error message, a preflight complaint, a verdict cached in SQLite or
any other file a judged run writes. Real servers on 127.0.0.1 quote the Authorization header
back, as debugging proxies do; the key is planted in the environment and searched for in every
byte the runs leave behind."""
import json
import os
import sqlite3

import pytest

from focal import components, loop
from focal.graders.judge import JudgeConfig, JudgeUnavailable
from focal.graders.judge.cache import VerdictCache
from focal.graders.judge.config import redact
from focal.graders.rule_server import RuleJudge
from judge_servers import KEY, EchoKeyServer, FaultServer, make_client
from test_judged_loop import tiny

ENV = "FOCAL_LEAK_TEST_KEY"


@pytest.mark.parametrize("pasted", [KEY, "AIzaSyD4ke7LongMixedCase_key", "openai_api_key"])
def test_api_key_env_takes_only_an_env_var_name_and_never_echoes_a_refused_one(pasted):
  with pytest.raises(ValueError, match="api_key_env takes the NAME") as e:
    JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m", api_key_env=pasted)
  assert pasted not in str(e.value)
  assert JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m",
                     api_key_env="MY_JUDGE_KEY_2").api_key_env == "MY_JUDGE_KEY_2"


def test_redact_replaces_every_occurrence_and_leaves_short_values():
  assert redact(f"a {KEY} b {KEY}", [KEY]) == "a [redacted] b [redacted]"
  assert redact("abc", ["ab"]) == "abc" and redact("x", [None, ""]) == "x"


def test_a_cache_written_before_redaction_is_read_back_redacted(tmp_path, monkeypatch):
  monkeypatch.setenv(ENV, KEY)
  server = FaultServer().start()
  try:
    with make_client(server.url, api_key_env=ENV, cache_path=str(tmp_path / "v.sqlite")) as c:
      first = c.judge_one("q", "r", {"text": "MODE=true c", "weight": 1.0})
    [key] = _keys(tmp_path / "v.sqlite")
    old = VerdictCache(str(tmp_path / "v.sqlite"))  # as an older focal would have stored it
    old.put(key, True, f"explained with Bearer {KEY}")
    old.close()
    with make_client(server.url, api_key_env=ENV, cache_path=str(tmp_path / "v.sqlite")) as c:
      again = c.judge_one("q", "r", {"text": "MODE=true c", "weight": 1.0})
  finally:
    server.close()
  assert first.valid and again.cached and again.explanation == "explained with Bearer [redacted]"


def _keys(path):
  with sqlite3.connect(str(path)) as db:
    return [row[0] for row in db.execute("SELECT key FROM verdicts")]


@pytest.fixture(scope="module")
def rule_judge():
  return RuleJudge()


def _judged(tmp_path, url, name, **judge):
  c = tiny(steps=1, base_url=url, api_key_env=ENV, cache_path=str(tmp_path / f"{name}.sqlite"),
           **judge)
  c.eval.judge.base_url, c.eval.judge.model = url, "focal-rules"
  c.eval.judge.api_key_env, c.eval.judge.cache_path = ENV, str(tmp_path / f"{name}-eval.sqlite")
  c.eval.judge.max_retries, c.eval.judge.backoff_s = 0, 0.0
  c.warm_start.steps, c.eval.num_samples = 0, 1  # the key's paths, not the policy, are tested
  return c


def test_a_planted_key_is_nowhere_in_the_files_output_or_errors_of_judged_runs(
    tmp_path, monkeypatch, capfd, caplog, rule_judge):
  monkeypatch.setenv(ENV, KEY)
  errors = []
  servers = {echo: EchoKeyServer(rule_judge.answer, echo).start()
             for echo in ("explain", "prose", "401")}
  try:
    # 1, 2: the key pasted into api_key_env, of the training judge or of the unused eval block.
    for block in ("grader", "eval"):
      c = _judged(tmp_path, servers["explain"].url, f"pasted-{block}")
      c[block].judge.api_key_env = KEY
      if block == "eval":
        c.eval.judge.base_url = ""  # a block not in use is checked (config.json records it)
      with pytest.raises(ValueError, match=f"{block}.judge.api_key_env takes the NAME") as e:
        loop.run(c, str(tmp_path / f"pasted-{block}"), progress=False)
      errors.append(str(e.value))
      assert not os.path.exists(tmp_path / f"pasted-{block}")
    # 3: a 401 that quotes the header; 4: a 200 at the preflight that quotes it.
    for echo, match in (("401", "refuses the API key"), ("prose", "no usable verdict")):
      with pytest.raises(JudgeUnavailable, match=match) as e:
        loop.run(_judged(tmp_path, servers[echo].url, echo), str(tmp_path / echo),
                 progress=False)
      errors.append(str(e.value))
      assert "[redacted]" in str(e.value)  # it was echoed, and caught at the client boundary
    # 5, 6: a whole run whose judge quotes the header in every explanation (the verdict caches,
    # training and evaluation), with the key also pasted into a URL of the config.
    c = _judged(tmp_path, servers["explain"].url + f"?token={KEY}", "run")
    loop.run(c, str(tmp_path / "run"), progress=False)
  finally:
    for s in servers.values():
      s.close()
  assert all(seen == f"Bearer {KEY}" for s in servers.values() for seen in s.seen)
  cached = _explanations(tmp_path / "run.sqlite") + _explanations(tmp_path / "run-eval.sqlite")
  assert cached and all(e.endswith("(asked with Bearer [redacted])") for e in cached)
  saved = json.load(open(tmp_path / "run" / "config.json"))
  assert saved["grader"]["judge"]["base_url"].endswith("?token=[redacted]")
  out, err = capfd.readouterr()
  leaks = [p for p in _files(tmp_path) if KEY.encode() in open(p, "rb").read()]
  assert leaks == [] and len(_files(tmp_path)) > 20
  for text in (out, err, caplog.text, *errors):
    assert KEY not in text


def _explanations(path):
  with sqlite3.connect(str(path)) as db:
    return [json.loads(v)["explanation"] for (v,) in db.execute("SELECT verdict FROM verdicts")]


def _files(root):
  return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names]


def test_an_unused_eval_judge_block_is_still_checked_before_anything_is_built():
  c = tiny(steps=2)
  c.eval.judge.api_key_env = KEY
  with pytest.raises(ValueError, match="eval.judge.api_key_env") as e:
    components.validate(c)
  assert KEY not in str(e.value)
  c = tiny(steps=2, base_url="http://127.0.0.1:1/v1", timeout_s=-1.0)
  with pytest.raises(ValueError, match="grader.judge.timeout_s"):
    components.validate(c)
