"""A small OpenAI-compatible HTTP server (stdlib): POST /v1/chat/completions, GET /v1/models.

The base of the rule judge server and of the tests' fault-injecting judges. HTTP/1.1 with
keep-alive, one thread per connection; an unknown model is a 404 in OpenAI's error shape.

  server = ChatServer(answer, models=("focal-rules",)).start()   # answer(body) -> message
  server.url  # "http://127.0.0.1:PORT/v1"
  server.close()
"""
from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from typing import Callable, Sequence

PREFIX = "/v1"


class ChatError(Exception):
  """An answer that is an HTTP error: status and message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def completion(message: dict, model: str, ident: int = 0) -> dict:
  """A chat.completion object holding one assistant message."""
  return {"id": f"chatcmpl-{ident}", "object": "chat.completion", "created": int(time.time()),
          "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "refusal": None,
                                                   **message}}]}


def error_body(message: str, kind: str = "invalid_request_error", code=None) -> dict:
  return {"error": {"message": message, "type": kind, "code": code}}


class ChatHandler(http.server.BaseHTTPRequestHandler):
  """Routes and JSON plumbing; `answer` turns a request body into a reply (override in tests)."""
  protocol_version = "HTTP/1.1"
  server: "ChatServer"

  def log_message(self, *args) -> None:
    pass

  def do_GET(self) -> None:
    if self.path.rstrip("/") != PREFIX + "/models":
      return self.send_json(404, error_body(f"no route GET {self.path}"))
    data = [{"id": m, "object": "model", "owned_by": "focal"} for m in self.server.models]
    self.send_json(200, {"object": "list", "data": data})

  def do_POST(self) -> None:
    try:
      body = self.read_json()
    except ValueError as e:
      return self.send_json(400, error_body(str(e)))
    if self.path.rstrip("/") != PREFIX + "/chat/completions":
      return self.send_json(404, error_body(f"no route POST {self.path}"))
    model = body.get("model")
    if self.server.models and model not in self.server.models:
      return self.send_json(404, error_body(f"The model `{model}` does not exist.",
                                            "NotFoundError", "model_not_found"))
    self.answer(body)

  def answer(self, body: dict) -> None:
    try:
      message = self.server.answer(body)
    except ChatError as e:
      return self.send_json(e.status, error_body(str(e)))
    self.send_json(200, completion(message, body["model"], next(self.server.ids)))

  def read_json(self) -> dict:
    length = int(self.headers.get("Content-Length") or 0)
    try:
      body = json.loads(self.rfile.read(length))
    except ValueError:
      raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
      raise ValueError("the request body needs a 'messages' list")
    return body

  def send_json(self, status: int, payload, headers: Sequence[tuple] = ()) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    self.send_response(status)
    for name, value in headers:
      self.send_header(name, value)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)


class ChatServer(http.server.ThreadingHTTPServer):
  """Serves `answer(body) -> assistant message dict` for `models` on host:port (0: any port)."""
  daemon_threads = True
  block_on_close = False
  # The listen queue holds a judge client's whole burst of new connections (JudgeConfig's
  # max_concurrency, 16 by default) while the accept loop waits for a CPU: socketserver's 5 let
  # connections be reset on a loaded machine (2 of 28 requests in one test run).
  request_queue_size = 128

  def __init__(self, answer: Callable[[dict], dict] | None = None,
               models: Sequence[str] = ("focal-rules",), host: str = "127.0.0.1", port: int = 0,
               handler: type = ChatHandler):
    super().__init__((host, port), handler)
    self.answer = answer
    self.models = tuple(models)
    self.ids = itertools.count()
    self._thread: threading.Thread | None = None

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}{PREFIX}"

  def start(self) -> "ChatServer":
    self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
    self._thread.start()
    return self

  def close(self) -> None:
    if self._thread is not None:
      self.shutdown()
    self.server_close()


def last_user_text(body: dict) -> str:
  """The text of the request's last user message (the judge prompt)."""
  for message in reversed(body["messages"]):
    if isinstance(message, dict) and message.get("role") == "user":
      content = message.get("content")
      if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
      if isinstance(content, str):
        return content
  raise ChatError(400, "the request has no user message with text content")
