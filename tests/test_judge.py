"""The judge client against a real HTTP server on 127.0.0.1 serving canned and faulty answers.

The criterion text carries a MODE marker that tells the server how to behave.
"""
import http.server
import json
import random
import re
import threading
import time

import numpy as np
import pytest

from focal.graders.judge import (JudgeClient, JudgeConfig, MalformedVerdict, build_messages,
                                 parse_verdict)

CLIENT_TIMEOUT = 0.2
SERVER_STALL = 0.6


def _content(met, fenced=True):
  obj = json.dumps({"explanation": "canned", "criteria_met": met})
  return f"```json\n{obj}\n```" if fenced else obj


class Server:
  def __init__(self):
    self.lock = threading.Lock()
    self.counts = {}
    self.in_flight = 0
    self.max_in_flight = 0
    self.bodies = []
    owner = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        mode = re.search(r"MODE=([\w-]+)", prompt).group(1)
        with owner.lock:
          owner.bodies.append(body)
          n = owner.counts.get(mode, 0)
          owner.counts[mode] = n + 1
          owner.in_flight += 1
          owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        self._answered = False
        try:
          self._serve(mode, n)
        except (BrokenPipeError, ConnectionResetError):
          pass  # the client gave up on a stalled answer
        finally:
          self._leave_flight()

      def _leave_flight(self):
        # A request stops being in flight before its answer is written: once the client reads
        # the answer it may send the next request, which must not find this one still counted.
        # The server's window thus lies inside the client's, so its maximum bounds nothing
        # the client did not do.
        if not self._answered:
          self._answered = True
          with owner.lock:
            owner.in_flight -= 1

      def _send(self, code, payload, headers=()):
        self._leave_flight()
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        for k, v in headers:
          self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def _ok(self, content):
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

      def _serve(self, mode, n):
        if mode == "true":
          self._ok(_content(True))
        elif mode == "false":
          self._ok(_content(False, fenced=False))
        elif mode == "slow":
          time.sleep(0.05)
          self._ok(_content(True))
        elif mode == "stall" or (mode == "stall-once" and n == 0):
          time.sleep(SERVER_STALL)
          self._ok(_content(True))
        elif mode == "stall-once":
          self._ok(_content(True))
        elif mode == "429-once" and n == 0:
          self._send(429, {"error": "rate limited"}, [("Retry-After", "0.01")])
        elif mode == "429-once":
          self._ok(_content(False))
        elif mode == "500":
          self._send(500, {"error": "boom"})
        elif mode == "400":
          self._send(400, {"error": "bad request"})
        elif mode == "prose":
          self._ok("The response looks fine to me.")
        elif mode == "not-bool":
          self._ok(json.dumps({"explanation": "x", "criteria_met": "yes"}))
        elif mode == "garbage-body":
          self._send(200, b"<html>proxy error</html>")
        else:
          raise AssertionError(mode)

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.httpd.daemon_threads = True
    self.httpd.block_on_close = False
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
    self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
    self.thread.start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture
def server():
  s = Server()
  yield s
  s.close()


def _client(server, sleeps=None, **kw):
  args = dict(base_url=server.url, model="judge-1", timeout_s=CLIENT_TIMEOUT, max_retries=2,
              backoff_s=0.01, backoff_max_s=0.05, max_concurrency=4)
  args.update(kw)
  return JudgeClient(JudgeConfig(**args), sleep=(sleeps.append if sleeps is not None else
                                                 time.sleep), rng=random.Random(0))


def _ask(client, mode, response="an answer"):
  return client.judge(build_messages("Is it safe?", response, f"MODE={mode} says so", 5))


def test_success_parses_fenced_and_plain_json(server):
  client = _client(server)
  v = _ask(client, "true")
  assert v.valid and v.criteria_met is True and v.explanation == "canned" and v.attempts == 1
  v = _ask(client, "false")
  assert v.valid and v.criteria_met is False
  body = server.bodies[0]
  assert body["model"] == "judge-1" and body["temperature"] == 0.0
  prompt = body["messages"][0]["content"]
  assert "user: Is it safe?\n\nassistant: an answer" in prompt
  assert "[5] MODE=true says so" in prompt


def test_timeout_then_success_and_timeout_always(server):
  sleeps = []
  client = _client(server, sleeps)
  v = _ask(client, "stall-once")
  assert v.valid and v.attempts == 2 and server.counts["stall-once"] == 2
  v = _ask(client, "stall")
  assert not v.valid and v.criteria_met is None and "timeout" in v.error.lower()
  assert server.counts["stall"] == 3  # first try + max_retries
  # The client, not the server, ended each stalled attempt: the server answers every stall
  # after SERVER_STALL (> CLIENT_TIMEOUT), so an attempt that waited for it would come back valid.
  assert len(sleeps) == 3  # each timeout retry waited its backoff (values: the HTTP 500 test)
  assert client.stats["failures"] == 1


def test_429_then_success_honours_retry_after(server):
  sleeps = []
  client = _client(server, sleeps, backoff_s=0.001)
  v = _ask(client, "429-once")
  assert v.valid and v.criteria_met is False and server.counts["429-once"] == 2
  assert sleeps == [pytest.approx(0.01)]


def test_500_always_fails_after_retries_with_backoff(server):
  sleeps = []
  client = _client(server, sleeps, max_retries=3, backoff_s=0.1, backoff_max_s=10, jitter=0.25)
  v = _ask(client, "500")
  assert not v.valid and "HTTP 500" in v.error and v.attempts == 4
  assert server.counts["500"] == 4
  assert len(sleeps) == 3
  for attempt, delay in enumerate(sleeps):
    base = 0.1 * 2 ** attempt
    assert 0.75 * base <= delay <= 1.25 * base
  assert len(set(sleeps)) == 3  # jittered


def test_client_errors_are_not_retried(server):
  client = _client(server)
  v = _ask(client, "400")
  assert not v.valid and "HTTP 400" in v.error and server.counts["400"] == 1


@pytest.mark.parametrize("mode", ["prose", "not-bool", "garbage-body"])
def test_malformed_output_is_retried_then_invalid(server, mode):
  client = _client(server)
  v = _ask(client, mode)
  assert not v.valid and v.criteria_met is None
  assert server.counts[mode] == 3


def test_cache_hit_sends_no_second_request(server, tmp_path):
  cache = str(tmp_path / "judge_cache.json")
  client = _client(server, cache_path=cache)
  messages = build_messages("q", "r", "MODE=true crit", 1)
  [first] = client.judge_many([messages])
  [second] = client.judge_many([messages])
  assert first.valid and second.cached and second.criteria_met is True
  assert server.counts["true"] == 1
  # The file cache serves a fresh client; another model is another key.
  again = _client(server, cache_path=cache)
  assert again.judge_many([messages])[0].cached and server.counts["true"] == 1
  other = _client(server, cache_path=cache, model="judge-2")
  assert not other.judge_many([messages])[0].cached and server.counts["true"] == 2
  # Failures are not cached: they are asked again next time.
  for _ in range(2):
    _client(server, cache_path=cache, max_retries=0).judge_many(
        [build_messages("q", "r", "MODE=500 crit", 1)])
  assert server.counts["500"] == 2


def test_corrupt_cache_file_is_a_clear_error(server, tmp_path):
  cache = tmp_path / "judge_cache.json"
  cache.write_text("{not json")
  with pytest.raises(ValueError, match="judge cache"):
    _client(server, cache_path=str(cache))


def test_concurrency_limit_and_dedup(server):
  client = _client(server, max_concurrency=2)
  requests = [build_messages("q", f"r{i}", "MODE=slow c", 1) for i in range(8)]
  verdicts = client.judge_many(requests + requests[:3])
  assert all(v.valid for v in verdicts) and len(verdicts) == 11
  assert server.counts["slow"] == 8
  assert server.max_in_flight == 2


def test_grade_arrays(server):
  client = _client(server)
  criteria = [["MODE=true a", "MODE=false b", "MODE=500 c"], ["MODE=true d"]]
  mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
  weights = np.array([[5, 3, -2, 0], [1, 0, 0, 0]], np.float32)
  responses = [["x", "y"], ["z", None]]
  conversations = ["user: hi", [{"role": "user", "content": "hello"}]]
  scores, valid = client.grade(conversations, responses, criteria, weights, mask)
  assert scores.shape == valid.shape == (2, 2, 4) and scores.dtype == np.float32
  np.testing.assert_array_equal(valid[0], [[1, 1, 0, 0], [1, 1, 0, 0]])
  np.testing.assert_array_equal(scores[0], [[1, 0, 0, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(valid[1], [[1, 0, 0, 0], [0, 0, 0, 0]])
  assert scores[1, 0, 0] == 1.0
  prompts = [b["messages"][0]["content"] for b in server.bodies]
  assert any("[-2] MODE=500 c" in p for p in prompts)
  assert not any("user: user: hi" in p for p in prompts)


@pytest.mark.parametrize("text, met", [
    ('```json\n{"explanation": "e", "criteria_met": true}\n```', True),
    ('{"criteria_met": false, "explanation": "e"}', False),
    ('Sure! Here it is:\n{"explanation": "e", "criteria_met": true}\nHope that helps.', True),
    ('```\n{"explanation": "e", "criteria_met": false}\n```', False),
])
def test_parse_verdict_tolerates_fences(text, met):
  assert parse_verdict(text)[0] is met


@pytest.mark.parametrize("text", ['{"criteria_met": "true"}', "yes", '{"explanation": "e"}', ""])
def test_parse_verdict_rejects(text):
  with pytest.raises(MalformedVerdict):
    parse_verdict(text)
