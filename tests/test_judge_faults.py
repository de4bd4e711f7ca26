"""The judge client against a fault-injecting judge on 127.0.0.1 (issues 24 and 26).

No mocks: every case is a real server misbehaving on a real socket. Every failure must become
valid=False for the slots it touches only, never a 0 or 1 that counts, never a lost batch.
"""
import time

import numpy as np
import pytest

from focal.graders.judge import JudgeCacheError, JudgeUnavailable
from focal.host_step import TooManyInvalid
from judge_servers import KEY, STALL_S, FaultServer, dead_url, make_client


@pytest.fixture
def server():
  s = FaultServer().start()
  yield s
  s.close()


def ask(client, mode, response="an answer"):
  return client.judge_one("Is it safe?", response, {"text": f"MODE={mode} c", "weight": 5})


def test_stalled_answers_time_out_and_are_retried(server):
  sleeps = []
  with make_client(server.url, sleeps) as client:
    v = ask(client, "stall-once")
    assert v.valid and v.attempts == 2 and server.counts["stall-once"] == 2
    v = ask(client, "stall")
    assert not v.valid and v.criteria_met is None and v.error.startswith("timeout")
  assert server.counts["stall"] == 3  # the first try + max_retries
  # The client, not the server, ended each stalled attempt: the server answers a stall after
  # STALL_S > timeout_s, so an attempt that waited for it would have come back valid.
  assert STALL_S > 0.2 and len(sleeps) == 3


def test_total_deadline_cuts_a_dribbling_answer(server):
  # The server sends one byte every 30 ms, well inside any per-read timeout, for about 3 s.
  # Only a total deadline stops the attempt: the verdict is invalid, and the server saw the
  # client hang up before the body was out (a per-read timeout would wait, then parse it).
  with make_client(server.url, max_retries=0, timeout_s=0.3) as client:
    v = ask(client, "dribble")
  assert not v.valid and v.error.startswith("timeout") and "timeout_s=0.3s" in v.error
  deadline = time.monotonic() + 10
  while not server.cut and time.monotonic() < deadline:
    time.sleep(0.05)
  assert server.cut == ["dribble"]


@pytest.mark.parametrize("mode, expected", [("429-once", 0.01), ("503-once", 0.02),
                                            ("429date-once", 3.0)])
def test_retry_after_is_honoured(server, mode, expected):
  sleeps = []
  with make_client(server.url, sleeps, backoff_s=0.001) as client:
    v = ask(client, mode)
  assert v.valid and v.attempts == 2 and server.counts[mode] == 2
  tolerance = 1.1 if "date" in mode else 1e-9  # an HTTP-date has whole seconds
  assert sleeps[0] == pytest.approx(expected, abs=tolerance)


def test_retry_after_is_capped(server):
  sleeps = []
  with make_client(server.url, sleeps, backoff_s=0.001, retry_after_max_s=0.5) as client:
    assert ask(client, "429date-once").valid
  assert sleeps == [pytest.approx(0.5)]


def test_500s_are_retried_with_jittered_exponential_backoff(server):
  sleeps = []
  with make_client(server.url, sleeps, max_retries=3, backoff_s=0.1, backoff_max_s=10,
                   jitter=0.25) as client:
    v = ask(client, "500")
  assert not v.valid and v.error == "HTTP 500: canned 500" and v.attempts == 4
  assert server.counts["500"] == 4 and len(sleeps) == 3
  for attempt, delay in enumerate(sleeps):
    assert 0.75 * 0.1 * 2 ** attempt <= delay <= 1.25 * 0.1 * 2 ** attempt
  assert len(set(sleeps)) == 3  # jittered


def test_client_errors_are_not_retried(server):
  with make_client(server.url) as client:
    v = ask(client, "400")
  assert not v.valid and "HTTP 400" in v.error and server.counts["400"] == 1


def test_a_dropped_connection_is_retried(server):
  with make_client(server.url) as client:
    v = ask(client, "drop-once")
  assert v.valid and v.attempts == 2


def test_refused_connections_are_invalid_verdicts_not_errors():
  with make_client(dead_url(), max_retries=1) as client:
    scores, valid, stats = client.grade(["q"], [["a", "b"]], [[{"text": "c", "weight": 1}]],
                                        [[True]])
  assert not valid.any() and not scores.any()
  assert stats.errors == {"connection refused": 2} and stats.requests == 4 and stats.retries == 2


@pytest.mark.parametrize("mode", ["prose", "met-yes", "met-no", "met-2", "met-null",
                                  "garbage-body", "no-choices", "null-content"])
def test_malformed_and_out_of_range_verdicts_are_retried_then_invalid(server, mode):
  with make_client(server.url) as client:
    v = ask(client, mode)
  assert not v.valid and v.criteria_met is None and v.score == 0.0
  assert server.counts[mode] == 3


def test_a_refusal_is_invalid_and_not_asked_again(server):
  with make_client(server.url) as client:
    v = ask(client, "refusal")
  assert not v.valid and "refused" in v.error and server.counts["refusal"] == 1


def test_bad_replies_invalidate_their_slots_only(server, tmp_path):
  # issue 26: a null content used to raise TypeError and lose the whole batch's paid verdicts.
  modes = ["true", "null-content", "false", "refusal", "garbage-body", "met-no", "true"]
  criteria = [[{"text": f"MODE={m} c{j}", "weight": 1.0} for j, m in enumerate(modes)]]
  cache = str(tmp_path / "v.sqlite")
  with make_client(server.url, max_retries=0, cache_path=cache) as client:
    scores, valid, stats = client.grade(["q"], [["a", "b"]], criteria, [[True] * len(modes)])
  np.testing.assert_array_equal(valid[0, :, :], [[1, 0, 1, 0, 0, 0, 1]] * 2)
  np.testing.assert_array_equal(scores[0, :, :], [[1, 0, 0, 0, 0, 0, 1]] * 2)
  assert stats.errors == {"unparseable reply": 4, "malformed verdict": 2, "refusal": 2}
  with make_client(server.url, max_retries=0, cache_path=cache) as client:  # verdicts kept
    _, _, stats = client.grade(["q"], [["a", "b"]], criteria, [[True] * len(modes)])
  assert stats.cache_hits == 6 and stats.requests == 8


def test_preflight_passes_on_a_live_endpoint(server):
  with make_client(server.url) as client:
    report = client.preflight()
  assert report["valid"] and report["latency_s"] > 0


def test_preflight_dead_endpoint_names_url_and_model():
  url = dead_url()
  with make_client(url, max_retries=1) as client:
    with pytest.raises(JudgeUnavailable) as e:
      client.preflight()
  assert url in str(e.value) and "'judge-1'" in str(e.value) and "unreachable" in str(e.value)


@pytest.mark.parametrize("status", [401, 403])
def test_preflight_bad_key_is_clear_and_never_shows_the_key(monkeypatch, status):
  server = FaultServer(require_key=status).start()
  try:
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-wrong-key-1234567")
    with make_client(server.url, api_key_env="JUDGE_TEST_KEY") as client:
      with pytest.raises(JudgeUnavailable) as e:
        client.preflight()
      message = str(e.value)
      assert f"HTTP {status}" in message and server.url in message and "$JUDGE_TEST_KEY" in message
      assert "sk-wrong-key" not in message and "[redacted]" in message  # the server echoed it
      assert "which is set" in message
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    with make_client(server.url, api_key_env="JUDGE_TEST_KEY") as client:
      assert client.preflight()["valid"]
      assert KEY not in repr(client.config)
  finally:
    server.close()
  assert server.counts == {"true": 1}  # one request per preflight, not retried on 401/403


def test_preflight_unknown_model(server):
  with make_client(server.url, model="no-such-judge") as client:
    with pytest.raises(JudgeUnavailable, match="unknown model.*The model `no-such-judge` does"):
      client.preflight()


def test_unwritable_cache_path_fails_before_any_request(server, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(JudgeCacheError, match="a_file/cache.sqlite.*cannot be opened for writing"):
    make_client(server.url, cache_path=str(blocker / "cache.sqlite"))
  not_a_db = tmp_path / "notes.txt"
  not_a_db.write_text("hello " * 1000)
  with pytest.raises(JudgeCacheError, match="notes.txt"):
    make_client(server.url, cache_path=str(not_a_db))
  assert server.counts == {}


# -- issue 34: every failure names its cause; bytes that are not UTF-8; the preflight --------


@pytest.mark.parametrize("mode, kind", [
    ("stall", "timeout"), ("500", "HTTP 500"), ("prose", "unparseable reply"),
    ("garbage-body", "unparseable reply"), ("two-verdicts", "wrong verdict count"),
    ("two-choices", "wrong verdict count"), ("reset", "connection reset"),
    ("met-no", "malformed verdict")])
def test_a_stop_for_invalid_verdicts_names_each_kind(server, mode, kind):
  # Two criteria per prompt: one healthy, one failing as `mode` says, over 2 x 2 rollouts.
  criteria = [[{"text": "MODE=true c", "weight": 1.0}, {"text": f"MODE={mode} c", "weight": 1.0}]
              for _ in range(2)]
  with make_client(server.url, max_retries=1) as client:
    _, valid, stats = client.grade(["q1", "q2"], [["a", "b"], ["c", "d"]], criteria,
                                   [[True, True]] * 2)
  assert valid[:, :, 0].all() and not valid[:, :, 1].any()
  assert stats.errors == {kind: 4}  # 4 distinct failing requests, each named by its cause
  error = TooManyInvalid(7, stats.invalid_frac, 0.05, stats.as_dict())
  assert f"errors by kind (distinct requests): {kind}: 4." in str(error)
  assert error.errors == {kind: 4} and "step 7: 50.0%" in str(error)


def test_bytes_that_are_not_utf8_reach_a_strict_judge_as_replacement_characters():
  server = FaultServer(strict_utf8=True).start()
  try:
    # What ByteTokenizer.decode_response makes of the bytes 0xC3 0x28 and 0xFF: lone surrogates.
    responses = [[b"ok \xc3(".decode("utf-8", "surrogateescape"),
                  b"\xff\xfe end".decode("utf-8", "surrogateescape")], ["fine", "caf\u00e9"]]
    criteria = [[{"text": "MODE=true c", "weight": 1.0}]] * 2
    with make_client(server.url, max_retries=0) as client:
      _, valid, stats = client.grade(["q1", "q2"], responses, criteria, [[True]] * 2)
    assert valid.all() and server.refused_utf8 == 0
    assert stats.replaced_chars == 3  # one U+FFFD per byte: 0xC3, 0xFF, 0xFE
    sent = [b["messages"][0]["content"] for b in server.bodies]
    assert any("ok \ufffd(" in p for p in sent) and any("\ufffd\ufffd end" in p for p in sent)
    assert any("caf\u00e9" in p for p in sent)  # valid UTF-8 goes as it is
    # The server is strict indeed: the lone surrogate the client used to send is refused.
    import http.client
    import json
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    body = json.dumps({"model": "judge-1", "messages": [{"role": "user", "content": "\udcc3"}]})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert conn.getresponse().status == 400 and server.refused_utf8 == 1
    conn.close()
  finally:
    server.close()


@pytest.mark.parametrize("mode", ["prose", "garbage-body", "two-verdicts", "met-no"])
def test_preflight_with_no_verdict_in_a_200_reply_is_an_error(server, mode):
  with make_client(server.url, max_retries=0) as client:
    with pytest.raises(JudgeUnavailable, match=rf"{server.url}.*'judge-1'.*no usable verdict"):
      client.preflight("q", {"text": f"MODE={mode} c", "weight": 1.0})


def test_preflight_refusal_is_a_warning_not_an_error(server, caplog):
  with make_client(server.url, max_retries=0) as client:
    report = client.preflight("q", {"text": "MODE=refusal c", "weight": 1.0})
  assert report["valid"] is False and "declined the preflight" in caplog.text
