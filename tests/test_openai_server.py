"""The OpenAI-compatible server the rule judge and the tests' judges run on
(focal.graders.openai_server)."""
import socket

from focal.graders.judge import JudgeConfig
from focal.graders.openai_server import ChatServer


def _connected_while_accept_waits(server, n: int) -> int:
  """How many of n connections finish their handshake while nothing accepts them (within 0.5 s,
  less than the kernel's 1 s SYN retransmission)."""
  opened = []
  try:
    for _ in range(n):
      try:
        opened.append(socket.create_connection(server.server_address[:2], timeout=0.5))
      except OSError:
        break
    return len(opened)
  finally:
    for s in opened:
      s.close()


def test_a_judge_clients_burst_of_connections_waits_in_the_listen_queue():
  """The serving thread is not running (a loaded machine's accept loop without a CPU): each of a
  client's concurrent connections must still be queued, not dropped or reset. socketserver's
  default queue of 5 held 6 of them."""
  burst = 4 * JudgeConfig.__dataclass_fields__["max_concurrency"].default  # 16
  server = ChatServer(lambda body: {"role": "assistant", "content": "{}"})
  try:
    assert _connected_while_accept_waits(server, burst) == burst
  finally:
    server.server_close()
