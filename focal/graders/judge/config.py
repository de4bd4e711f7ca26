"""The judge's settings (the `grader.judge` config block) and its errors.

The API key is never a setting: `api_key_env` names the environment variable that holds it
(an upper-case name, so a key pasted there by mistake is refused, never echoed), and the key is
read from the environment at request time only. Whatever a judge echoes back (a 401 body that
quotes the Authorization header, a verdict explanation, a proxy's error page) passes through
`redact` at the client boundary before it reaches a message, a log line, the verdict cache or
a file of the run.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Mapping

TEMPLATES = ("pow3r", "healthbench")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
REDACTED = "[redacted]"
_MIN_SECRET = 4  # shorter values would redact ordinary text


class JudgeError(RuntimeError):
  """The judge cannot be used as configured (raised before or instead of paid requests)."""


class JudgeUnavailable(JudgeError):
  """Preflight failed: the endpoint is unreachable, refuses the key or does not know the model."""


class JudgeCacheError(JudgeError):
  """The verdict cache cannot be opened or written."""


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
  """An OpenAI-compatible judge endpoint and how to talk to it.

  base_url: the API root, e.g. "http://127.0.0.1:8000/v1" (requests go to
    base_url + "/chat/completions").
  model: the judge model's name at that endpoint.
  api_key_env: NAME of the environment variable with the API key (unset: no Authorization header).
  max_concurrency: requests in flight at most (one keep-alive connection each).
  timeout_s: TOTAL seconds one HTTP attempt may take, connect to last byte.
  max_retries: retries after the first attempt (timeouts, connection errors, 408/429/5xx, output
    that is not a verdict); other 4xx answers are not retried.
  template: "pow3r" (training: criterion with its context, pitfalls reworded under flip) or
    "healthbench" (evaluation: simple-evals' rubric-item prompt, original sense).
  cache_path: SQLite verdict cache ("" keeps verdicts in memory for this client only).
  max_invalid_frac: the share of invalid verdicts in a step above which the training loop stops.
  backoff_s, backoff_max_s, jitter: retry delay min(backoff_max_s, backoff_s * 2**attempt), times
    a uniform factor in [1 - jitter, 1 + jitter].
  retry_after_max_s: the longest server-requested Retry-After that is honoured as given.
  temperature, max_tokens: sampling settings sent to the judge (max_tokens 0: not sent).
  reasoning_effort: sent as `reasoning_effort` when not "" (reasoning judges: "low"/"medium"...).
  """
  base_url: str = ""
  model: str = ""
  api_key_env: str = "OPENAI_API_KEY"
  max_concurrency: int = 16
  timeout_s: float = 120.0
  max_retries: int = 4
  template: str = "pow3r"
  cache_path: str = ""
  max_invalid_frac: float = 0.05
  backoff_s: float = 1.0
  backoff_max_s: float = 30.0
  jitter: float = 0.25
  retry_after_max_s: float = 120.0
  temperature: float = 1.0
  max_tokens: int = 2048
  reasoning_effort: str = ""

  def __post_init__(self):
    for problem in _problems(self):
      raise ValueError(f"grader.judge.{problem}")

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any]) -> "JudgeConfig":
    """From a dict or ConfigDict block; unknown fields fail listing the valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
      raise ValueError(f"unknown grader.judge field(s) {unknown}; valid: {', '.join(names)}")
    return cls(**dict(values))

  def api_key(self) -> str | None:
    """The key from the environment, read now (never stored)."""
    return os.environ.get(self.api_key_env) or None

  def redact(self, text: str) -> str:
    """`text` with this judge's key replaced by [redacted] (see `redact`)."""
    return redact(text, [self.api_key()])


def env_name_problem(name) -> str | None:
  """Why `name` is not an environment-variable name (None when it is). Never quotes `name`: a
  key pasted into api_key_env by mistake must not reach a log."""
  if isinstance(name, str) and _ENV_NAME.fullmatch(name):
    return None
  return ("api_key_env takes the NAME of an environment variable (upper-case letters, digits "
          "and _, e.g. OPENAI_API_KEY), not the key itself; the value given is not shown")


def check_blocks(config) -> None:
  """The judge blocks of a run config (`grader.judge`, `eval.judge`), before anything is built:
  the api_key_env of both, in use or not (config.json records every field, so a key pasted
  into an unused block would be written there), and every field of `eval.judge` when it names
  an endpoint. (`grader.judge` in use is checked by its grader kind: `check_block`.)"""
  for name in ("grader", "eval"):
    judge = config[name].judge
    _check_key_env(judge, name)
    if name == "eval" and judge.base_url:
      check_block(config, name)


def check_block(config, name: str) -> None:
  """Every field of `<name>.judge`, a block in use (its api_key_env first, as `check_blocks`
  checks it); the errors name that block."""
  judge = config[name].judge
  _check_key_env(judge, name)
  try:
    JudgeConfig.from_mapping(judge.to_dict())
  except ValueError as e:
    raise ValueError(str(e).replace("grader.judge.", f"{name}.judge.", 1)) from None


def _check_key_env(judge, name: str) -> None:
  problem = env_name_problem(judge.api_key_env)
  if problem:
    raise ValueError(f"{name}.judge.{problem}")



def secrets_of(env_names) -> list[str]:
  """The values of the environment variables `env_names` that are set (the keys to redact)."""
  return [os.environ[n] for n in env_names if isinstance(n, str) and os.environ.get(n)]


def redact(text: str, secrets) -> str:
  """`text` with every secret in `secrets` replaced by [redacted]: the one redaction of the
  judge's key, applied to every message, log line, cache row and run file that may hold what
  an endpoint echoed. Secrets shorter than 4 characters are left (they would redact words)."""
  if not isinstance(text, str):
    return text
  for secret in secrets:
    if secret and len(secret) >= _MIN_SECRET and secret in text:
      text = text.replace(secret, REDACTED)
  return text


def _problems(c: JudgeConfig):
  if not c.base_url.startswith(("http://", "https://")):
    yield f"base_url must start with http:// or https://, got {c.base_url!r}"
  if not c.model:
    yield "model must name the judge model, got ''"
  problem = env_name_problem(c.api_key_env)
  if problem:
    yield problem
  if c.template not in TEMPLATES:
    yield f"template must be one of {TEMPLATES}, got {c.template!r}"
  for name, low in (("max_concurrency", 1), ("max_retries", 0), ("max_tokens", 0)):
    value = getattr(c, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      yield f"{name} must be an int >= {low}, got {value!r}"
  for name in ("timeout_s", "backoff_s", "backoff_max_s", "retry_after_max_s", "temperature"):
    value = getattr(c, name)
    positive = name == "timeout_s"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
        or value < 0 or (positive and value == 0):
      yield f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}"
  for name in ("max_invalid_frac", "jitter"):
    value = getattr(c, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
      yield f"{name} must be in [0, 1], got {value!r}"
