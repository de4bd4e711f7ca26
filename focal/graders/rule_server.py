"""A local OpenAI-compatible judge that grades the synthetic suite with its own rule graders.

  python -m focal.graders.rule_server --port 8765      # http://127.0.0.1:8765/v1, "focal-rules"

It answers the judge client's criterion prompts ("pow3r", pitfalls reworded as avoidance
included, and "healthbench") exactly as the in-jit grader would: the prompt text is parsed back
to the task's features (`Task.parse`), the response text to the exact token ids
(`ByteTokenizer.encode_response`, the inverse of the `decode_response` the loop sends), the
criterion from its `<task>/<criterion>` text (`focal.tasks.texts`), and the verdict is the
task's jittable check on those ids (inverted when the criterion was asked as avoidance). So a
judged run of the synthetic suite sees the verdicts of a programmatic run, bit for bit.

One exception, by design of the client: a byte that is not valid UTF-8 reaches any judge as
U+FFFD (one per byte; focal.graders.judge.requests.valid_utf8), so its value is lost. Each
U+FFFD reads back as the byte 0xFF: the suite's checks test ASCII classes, ASCII tokens and
lengths, for which every non-ASCII byte is alike, so the verdict is still the in-jit one (a
policy emitting a real U+FFFD, the valid bytes EF BF BD, would read as one byte, not three).

A prompt it cannot read (not a suite prompt, a foreign criterion) gets a refusal
(`content: null`), which the client counts as an invalid verdict.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import threading

import jax
import numpy as np

from focal import tasks
from focal.graders.judge.requests import REPLACEMENT
from focal.graders.judge.templates import split_prompt
from focal.graders.openai_server import ChatServer, last_user_text
from focal.tasks import texts
from focal.tokenizers import ByteTokenizer

DEFAULT_MODEL = "focal-rules"
_UNKNOWN_BYTE = "\udcff"  # a replaced byte reads as 0xFF (surrogateescape's form of it)
_MIN_LENGTH = 64  # responses are padded to a power of two >= this: few jit shapes
_USER = "user: "


class RuleJudge:
  """Verdicts of the suite's rule graders on judge prompts."""

  def __init__(self, suite: tasks.Suite | None = None, cache_size: int = 4096):
    self.suite = suite or tasks.make_suite()
    self._grade = jax.jit(self.suite.grade)
    self._tokenizer = ByteTokenizer()
    self._scores: collections.OrderedDict = collections.OrderedDict()
    self._cache_size = cache_size
    self._lock = threading.Lock()

  def warm_up(self) -> None:
    """Compiles the grader for the common response length before the first request."""
    row = self.suite.parse(texts.prompt_texts(self.suite.make_prompts("train", 1, 0))[0])
    self._scores_of(row, np.full((_MIN_LENGTH,), tasks.PAD, np.int32), np.zeros(_MIN_LENGTH, bool))

  def verdict(self, prompt: str) -> tuple[bool, str]:
    """(criteria_met as asked, explanation); ValueError when the prompt is not gradable."""
    template, parts = split_prompt(prompt)
    if not parts.conversation.startswith(_USER):
      raise ValueError("the conversation is not one user turn")
    row = self.suite.parse(parts.conversation[len(_USER):])
    task = self.suite.tasks[int(row[0])]
    task_name, criterion = texts.find_criterion(parts.criterion)
    if task_name != task.name:
      raise ValueError(f"criterion {task_name}/{criterion} asked about a {task.name} prompt")
    k = task.criterion_index(criterion)
    ids, _ = self._tokenizer.encode_response(parts.response.replace(REPLACEMENT, _UNKNOWN_BYTE))
    length = max(_MIN_LENGTH, 1 << max(len(ids) - 1, 0).bit_length())
    tokens, mask = tasks.pad_responses([ids], length)
    holds = bool(self._scores_of(row, tokens[0], mask[0])[k] > 0.5)
    met = holds != parts.reworded
    sense = "avoidance of " if parts.reworded else ""
    return met, (f"rule {task_name}/{criterion} {'holds' if holds else 'does not hold'}; "
                 f"{sense}the criterion is {'met' if met else 'not met'} ({template} prompt)")

  def answer(self, body: dict) -> dict:
    """The assistant message for a chat-completion request body."""
    try:
      met, explanation = self.verdict(last_user_text(body))
    except ValueError as e:
      return {"content": None, "refusal": f"cannot grade this prompt: {e}"}
    return {"content": json.dumps({"explanation": explanation, "criteria_met": met})}

  def _scores_of(self, row: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    key = (row.tobytes(), ids.tobytes(), mask.tobytes())
    with self._lock:
      if key in self._scores:
        self._scores.move_to_end(key)
        return self._scores[key]
    scores = np.asarray(self._grade(row[None], ids[None], mask[None]))[0]
    with self._lock:
      self._scores[key] = scores
      if len(self._scores) > self._cache_size:
        self._scores.popitem(last=False)
    return scores


def make_server(port: int = 8765, host: str = "127.0.0.1", model: str = DEFAULT_MODEL,
                task_names=None) -> ChatServer:
  """A rule judge server, compiled and bound (`.start()` serves from a thread, `.close()`)."""
  judge = RuleJudge(tasks.make_suite(task_names))
  judge.warm_up()
  return ChatServer(judge.answer, models=(model,), host=host, port=port)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
  parser.add_argument("--host", default="127.0.0.1")
  parser.add_argument("--model", default=DEFAULT_MODEL, help="the model name it answers to")
  parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
  args = parser.parse_args(argv)
  names = [n for n in args.tasks.split(",") if n] or None
  server = make_server(args.port, args.host, args.model, names)
  print(f"focal rule judge: model {args.model!r} at {server.url}", flush=True)
  try:
    server.serve_forever(0.1)
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


if __name__ == "__main__":
  sys.exit(main())
