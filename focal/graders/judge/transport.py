"""HTTP to one OpenAI-compatible endpoint: keep-alive connections and a total deadline.

Stdlib only. Each worker thread keeps one persistent connection (so a pool of N workers holds
at most N), reused across requests; a connection the server closed while idle is reopened once
at no retry cost. `timeout_s` bounds a whole attempt, connect to last byte: socket timeouts
bound each read, and a watchdog thread shuts the socket down at the deadline, so a server that
dribbles one byte at a time cannot hold a request past it.
"""
from __future__ import annotations

import dataclasses
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
import urllib.parse


class TransportError(Exception):
  """No HTTP answer: kind is 'timeout', 'connection refused', 'connection reset' (the server
  hung up mid-exchange) or 'connection' (any other socket error)."""

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind


@dataclasses.dataclass(frozen=True)
class Reply:
  status: int
  headers: http.client.HTTPMessage
  body: bytes


class _Stale(Exception):
  """A reused keep-alive connection was closed by the server before answering."""


class _Watchdog:
  """One daemon thread that shuts down the sockets of attempts past their deadline."""

  def __init__(self):
    self._cv = threading.Condition()
    self._heap: list = []
    self._live: dict[int, http.client.HTTPConnection] = {}
    self._fired: set[int] = set()
    self._ids = itertools.count()
    self._stopped = False
    threading.Thread(target=self._run, name="judge-watchdog", daemon=True).start()

  def stop(self) -> None:
    with self._cv:
      self._stopped = True
      self._cv.notify()

  def arm(self, deadline: float, conn: http.client.HTTPConnection) -> int:
    with self._cv:
      token = next(self._ids)
      self._live[token] = conn
      heapq.heappush(self._heap, (deadline, token))
      if self._heap[0][1] == token:
        self._cv.notify()
      return token

  def disarm(self, token: int) -> bool:
    """Ends the watch; True when it fired (the socket was shut down)."""
    with self._cv:
      self._live.pop(token, None)
      if token in self._fired:
        self._fired.discard(token)
        return True
      return False

  def _run(self) -> None:
    with self._cv:
      while not self._stopped:
        while self._heap and self._heap[0][1] not in self._live:
          heapq.heappop(self._heap)  # disarmed in time
        if not self._heap:
          self._cv.wait()
          continue
        deadline, token = self._heap[0]
        wait = deadline - time.monotonic()
        if wait > 0:
          self._cv.wait(wait)
          continue
        heapq.heappop(self._heap)
        sock = self._live.pop(token).sock
        self._fired.add(token)
        if sock is not None:
          try:
            sock.shutdown(socket.SHUT_RDWR)
          except OSError:
            pass  # already closed


class Transport:
  """Requests to base_url's host, one keep-alive connection per calling thread."""

  def __init__(self, base_url: str, timeout_s: float):
    url = urllib.parse.urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
      raise ValueError(f"base_url must look like http(s)://host[:port]/path, got {base_url!r}")
    self.base_url = base_url
    self.timeout_s = float(timeout_s)
    self._https = url.scheme == "https"
    self._host, self._port = url.hostname, url.port
    self._prefix = url.path.rstrip("/")
    self._local = threading.local()
    self._lock = threading.Lock()
    self._connections: list[http.client.HTTPConnection] = []
    self._watchdog = _Watchdog()

  def request(self, method: str, path: str, body: bytes | None = None,
              headers: dict | None = None) -> Reply:
    """One attempt, at most timeout_s seconds; raises TransportError when no answer came."""
    deadline = time.monotonic() + self.timeout_s
    conn = self._connection()
    reused = conn.sock is not None
    try:
      return self._exchange(conn, method, path, body, headers or {}, deadline, reused)
    except _Stale:
      return self._exchange(conn, method, path, body, headers or {}, deadline, False)

  def close(self) -> None:
    with self._lock:
      for conn in self._connections:
        conn.close()
      self._connections.clear()
    self._watchdog.stop()

  def _connection(self) -> http.client.HTTPConnection:
    conn = getattr(self._local, "conn", None)
    if conn is None:
      if self._https:
        conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s,
                                           context=ssl.create_default_context())
      else:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
      self._local.conn = conn
      with self._lock:
        self._connections.append(conn)
    return conn

  def _exchange(self, conn, method, path, body, headers, deadline, reused) -> Reply:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      raise TransportError("timeout", self._timeout_message())
    conn.timeout = remaining  # bounds connect()
    if conn.sock is not None:
      conn.sock.settimeout(remaining)
    token = self._watchdog.arm(deadline, conn)
    try:
      conn.request(method, self._prefix + path, body=body, headers=headers)
      response = conn.getresponse()
      reply = Reply(response.status, response.headers, response.read())
    except (OSError, http.client.HTTPException) as e:
      fired = self._watchdog.disarm(token)
      conn.close()
      if fired or isinstance(e, TimeoutError):
        raise TransportError("timeout", self._timeout_message()) from None
      if reused and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                   ConnectionResetError)):
        raise _Stale() from None
      if isinstance(e, ConnectionRefusedError):
        raise TransportError("connection refused", f"connection refused by {self.base_url}") \
            from None
      if isinstance(e, (ConnectionResetError, BrokenPipeError)):  # RemoteDisconnected included
        raise TransportError("connection reset", f"connection reset by {self.base_url} before "
                             f"a complete answer ({type(e).__name__}: {e})") from None
      raise TransportError("connection", f"{type(e).__name__}: {e}") from None
    if self._watchdog.disarm(token):
      conn.close()  # the answer was complete, but the socket is shut down: reconnect next time
    return reply

  def _timeout_message(self) -> str:
    return f"timeout: no complete answer within timeout_s={self.timeout_s:g}s"
