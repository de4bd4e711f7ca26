"""A fault-injecting OpenAI-compatible judge on 127.0.0.1 for the judge client's tests.

The judge prompt carries a marker MODE=<name> (in the criterion text) that tells the server
how to misbehave; the server counts requests per mode, the requests in flight and the client
connections it saw.
"""
import email.utils
import json
import random
import re
import socket
import struct
import threading
import time

from focal.graders.judge import JudgeClient, JudgeConfig
from focal.graders.openai_server import ChatHandler, ChatServer, completion, last_user_text

STALL_S = 0.6        # a stalled answer comes after this long (tests use client timeouts < it)
DRIBBLE_GAP_S = 0.03  # a dribbled body sends one byte per gap: ~3 s for the whole body
KEY = "sk-test-0123456789-secret"


def verdict_text(met, fenced=True):
  obj = json.dumps({"explanation": "canned", "criteria_met": met})
  return f"```json\n{obj}\n```" if fenced else obj


class FaultHandler(ChatHandler):
  timeout = None  # seconds an idle keep-alive connection is kept (None: forever)

  def setup(self):
    super().setup()
    if self.server.idle_close_s:
      self.connection.settimeout(self.server.idle_close_s)

  def do_POST(self):
    if self.server.strict_utf8 and not self.valid_utf8_body():
      return self.send_json(400, {"error": {"message": "request body is not valid UTF-8 JSON "
                                                       "(lone surrogate)"}})
    if self.server.require_key and self.headers.get("Authorization") != f"Bearer {KEY}":
      # Echo the header back, as some proxies do: the client must not pass the key on.
      got = self.headers.get("Authorization")
      return self.send_json(self.server.require_key, {"error": {"message": f"bad key {got}"}})
    super().do_POST()

  def valid_utf8_body(self):
    """What a strict server (serde_json, Go's encoding/json with validation) accepts: JSON
    whose strings are valid Unicode. Peeks at the body and puts it back for read_json."""
    length = int(self.headers.get("Content-Length") or 0)
    raw = self.rfile.read(length)
    self.rfile = _Replay(raw, self.rfile)
    try:
      json.dumps(json.loads(raw), ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
      with self.server.lock:
        self.server.refused_utf8 += 1
      return False
    return True

  def finish(self):
    try:
      super().finish()
    except OSError:
      pass  # the "reset" mode closed the socket under the handler

  def answer(self, body):
    prompt = last_user_text(body)
    match = re.search(r"MODE=([\w-]+)", prompt)
    mode = match.group(1) if match else "true"
    s = self.server
    with s.lock:
      s.bodies.append(body)
      n = s.counts.get(mode, 0)
      s.counts[mode] = n + 1
      s.ports.add(self.client_address[1])
      s.in_flight += 1
      s.max_in_flight = max(s.max_in_flight, s.in_flight)
    self._answered = False
    try:
      self.serve_mode(mode, n, body)
    except (BrokenPipeError, ConnectionResetError):
      with s.lock:
        s.cut.append(mode)  # the client hung up before the answer was out
    finally:
      self.leave_flight()

  def leave_flight(self):
    # Out of flight before the answer is written: once the client has read it, it may send its
    # next request, which must not find this one still counted.
    if not self._answered:
      self._answered = True
      with self.server.lock:
        self.server.in_flight -= 1

  def send_json(self, status, payload, headers=()):
    if hasattr(self, "_answered"):  # set once a request reached answer()
      self.leave_flight()
    super().send_json(status, payload, headers)

  def ok(self, content, **message):
    self.send_json(200, completion({"content": content, **message}, "judge-1"))

  def serve_mode(self, mode, n, body):
    once = mode.endswith("-once") and n > 0
    if mode == "true" or once:
      self.ok(verdict_text(True))
    elif mode == "false":
      self.ok(verdict_text(False, fenced=False))
    elif mode == "slow":
      time.sleep(0.05)
      self.ok(verdict_text(True))
    elif mode in ("stall", "stall-once"):
      time.sleep(STALL_S)
      self.ok(verdict_text(True))
    elif mode == "dribble":
      self.dribble(verdict_text(True).encode())
    elif mode == "429-once":
      self.send_json(429, {"error": "slow down"}, [("Retry-After", "0.01")])
    elif mode == "429date-once":
      when = email.utils.formatdate(time.time() + 3, usegmt=True)
      self.send_json(429, {"error": "slow down"}, [("Retry-After", when)])
    elif mode == "503-once":
      self.send_json(503, {"error": "overloaded"}, [("Retry-After", "0.02")])
    elif mode in ("500", "400"):
      self.send_json(int(mode), {"error": {"message": f"canned {mode}"}})
    elif mode == "drop-once":
      self.close_connection = True  # hang up without an answer
    elif mode == "reset":  # abort the connection: the client reads ECONNRESET
      self.leave_flight()
      self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
      self.connection.close()
      self.close_connection = True
    else:
      self.serve_bad_verdict(mode)

  def serve_bad_verdict(self, mode):
    replies = {
        "prose": lambda: self.ok("The response looks fine to me."),
        "met-yes": lambda: self.ok(json.dumps({"explanation": "x", "criteria_met": "yes"})),
        "met-no": lambda: self.ok(json.dumps({"explanation": "x", "criteria_met": "no"})),
        "met-2": lambda: self.ok(json.dumps({"explanation": "x", "criteria_met": 2})),
        "met-null": lambda: self.ok(json.dumps({"explanation": "x", "criteria_met": None})),
        "null-content": lambda: self.ok(None),
        "refusal": lambda: self.ok(None, refusal="I can't help with that."),
        "garbage-body": lambda: self.send_json(200, b"<html>proxy error</html>"),
        "no-choices": lambda: self.send_json(200, {"choices": []}),
        "two-verdicts": lambda: self.ok(json.dumps([{"explanation": "a", "criteria_met": True},
                                                    {"explanation": "b", "criteria_met": False}])),
        "two-choices": lambda: self.send_json(200, {"choices": [
            completion({"content": verdict_text(True)}, "judge-1")["choices"][0]] * 2}),
        # Proxies and debugging servers that quote the request's Authorization header back.
        "echo-key": lambda: self.ok(f"cannot grade; got {self.headers.get('Authorization')}"),
        "echo-explained": lambda: self.ok(json.dumps({
            "explanation": f"graded for {self.headers.get('Authorization')}",
            "criteria_met": True})),
    }
    replies[mode]()

  def dribble(self, content):
    data = json.dumps(completion({"content": content.decode()}, "judge-1")).encode()
    self.leave_flight()
    self.send_response(200)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.flush()
    for i in range(len(data)):
      self.wfile.write(data[i:i + 1])
      self.wfile.flush()
      time.sleep(DRIBBLE_GAP_S)


class _Replay:
  """A request body already read, handed to the handler's reader again."""

  def __init__(self, data, rest):
    self._data, self._rest = data, rest

  def read(self, n=-1):
    if self._data:
      out, self._data = (self._data, b"") if n < 0 else (self._data[:n], self._data[n:])
      return out
    return self._rest.read(n)

  def readline(self, *args):
    return self._rest.readline(*args)


class FaultServer(ChatServer):
  """ChatServer with FaultHandler. require_key: None, or the status (401/403) for a missing or
  wrong key; idle_close_s: close keep-alive connections idle this long; strict_utf8: refuse
  (400) a body whose strings are not valid Unicode, counted in `refused_utf8`."""

  def __init__(self, models=("judge-1",), require_key=None, idle_close_s=None, strict_utf8=False):
    super().__init__(models=models, handler=FaultHandler)
    self.require_key = require_key
    self.idle_close_s = idle_close_s
    self.strict_utf8, self.refused_utf8 = strict_utf8, 0
    self.lock = threading.Lock()
    self.counts, self.bodies, self.cut, self.ports = {}, [], [], set()
    self.in_flight = self.max_in_flight = 0


def dead_url():
  """The URL of a port nothing listens on (connections are refused)."""
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/v1"


def make_client(url, sleeps=None, **kw):
  """A client with test-sized timeouts and backoffs; `sleeps` (a list) records retry delays
  instead of sleeping them."""
  args = dict(base_url=url, model="judge-1", timeout_s=0.2, max_retries=2, backoff_s=0.01,
              backoff_max_s=0.05, max_concurrency=4)
  args.update(kw)
  sleep = sleeps.append if sleeps is not None else time.sleep
  return JudgeClient(JudgeConfig(**args), sleep=sleep, rng=random.Random(0))


class EchoKeyHandler(ChatHandler):
  """A judge that quotes the request's Authorization header back, as debugging proxies and
  some gateways do. server.echo: "explain" (the rule judge's verdict, the header in its
  explanation), "prose" (200, no verdict, the header in the text) or "401" (the header in the
  error)."""

  def answer(self, body):
    auth = self.headers.get("Authorization")
    with self.server.lock:
      self.server.seen.append(auth)
    if self.server.echo == "401":
      return self.send_json(401, {"error": {"message": f"invalid key in {auth}"}})
    if self.server.echo == "prose":
      return self.send_json(200, completion({"content": f"cannot grade for {auth}"}, "x"))
    message = self.server.answer(body)
    if message.get("content"):
      verdict = json.loads(message["content"])
      verdict["explanation"] += f" (asked with {auth})"
      message = {"content": json.dumps(verdict)}
    self.send_json(200, completion(message, body["model"]))


class EchoKeyServer(ChatServer):
  def __init__(self, answer, echo="explain", models=("focal-rules",)):
    super().__init__(answer, models=models, handler=EchoKeyHandler)
    self.echo, self.seen, self.lock = echo, [], threading.Lock()
