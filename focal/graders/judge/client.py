"""The judge client: one OpenAI-compatible chat completion per (prompt, rollout, criterion).

  client = JudgeClient(JudgeConfig(base_url=..., model=..., cache_path=...))  # cache checked
  client.preflight()                                   # one request; JudgeUnavailable if dead
  scores, valid, stats = client.grade(conversations, responses, criteria, mask, "flip")

Score convention, whatever the template: a score is 1 when the criterion's ORIGINAL text holds
for the response (for a pitfall: the response falls into it), because
`focal.rubric.apply_pitfalls` flips pitfalls for training downstream. A pitfall asked as
avoidance (template "pow3r", pitfall_mode "flip") that the judge marks met is stored as 0.
A verdict that never arrives or never parses is valid=False for its slot only (score 0 there),
never a 0 or a 1 that counts.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import random
import threading
import time
from typing import Callable

from tqdm import tqdm

from focal.graders.judge import templates
from focal.graders.judge.cache import VerdictCache
from focal.graders.judge.config import JudgeConfig, JudgeUnavailable
from focal.graders.judge.replies import (MalformedVerdict, Refusal, UnparseableReply,
                                         WrongVerdictCount, completion_content, error_message,
                                         parse_verdict)
from focal.graders.judge.requests import (GradeStats, Outcome, RequestTable, retry_after_seconds,
                                          valid_utf8)
from focal.graders.judge.transport import Transport, TransportError

log = logging.getLogger(__name__)
_RETRYABLE_STATUS = (408, 409, 425, 429)


@dataclasses.dataclass(frozen=True)
class JudgeVerdict:
  """One slot's verdict. score follows the module's convention; criteria_met is the judge's
  own answer to the question as asked (None when invalid)."""
  score: float
  valid: bool
  criteria_met: bool | None
  explanation: str = ""
  error: str = ""
  attempts: int = 0
  cached: bool = False


class JudgeClient:
  """Grades with an LLM judge. Args: config; sleep (called with each retry delay; tests pass a
  recorder); rng (the jitter source)."""

  def __init__(self, config: JudgeConfig, *, sleep: Callable[[float], None] = time.sleep,
               rng: random.Random | None = None):
    self.config = config
    self.template = templates.get(config.template)
    self.template_hash = templates.template_hash(self.template)
    self.cache = VerdictCache(config.cache_path)  # an unwritable path fails here
    self.totals = GradeStats()
    self._totals_lock = threading.Lock()  # grade may run on a background thread (overlap)
    self._transport = Transport(config.base_url, config.timeout_s)
    self._pool = concurrent.futures.ThreadPoolExecutor(config.max_concurrency, "judge")
    self._sleep = sleep
    self._rng = rng or random.Random()

  def __enter__(self) -> "JudgeClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    self._pool.shutdown(wait=True, cancel_futures=True)
    self._transport.close()
    self.cache.close()

  # -- the loop's entry points ------------------------------------------------------------------

  def grade(self, conversations, responses, criteria, mask, pitfall_mode: str = "flip",
            progress: bool = False):
    """Judges every (prompt b, rollout g, criterion k) with mask[b, k].

    Args:
      conversations: [B] prompts: message lists {role, content}, or a rendered transcript.
      responses: [B][G] decoded rollouts (None where decoding failed: invalid, not asked).
      criteria: [B] lists of {text, weight (signed), category (name or id), title?, tags?,
        required?} (or JudgeCriterion), entry k for slot k.
      mask: [B, K] bool, the real criteria.
      pitfall_mode: "flip" (pitfalls asked as avoidance under "pow3r") or "signed".

    Returns:
      scores [B, G, K] float32 (1 = the original criterion holds; 0 where invalid),
      valid [B, G, K] bool, and this call's GradeStats. Identical requests are asked once.
    """
    start = time.monotonic()
    table = RequestTable.build(self.config.model, self.template_hash, conversations, responses,
                               criteria, mask, pitfall_mode, self.template)
    outcomes = self._resolve(table, progress)
    scores, valid = table.fill(outcomes)
    stats = table.stats(outcomes, valid, time.monotonic() - start)
    with self._totals_lock:
      self.totals.add(stats)
    return scores, valid, stats

  def judge_one(self, conversation, response: str, criterion, pitfall_mode: str = "flip"
                ) -> JudgeVerdict:
    """The verdict on one (conversation, response, criterion), through the cache."""
    if response is None:
      return JudgeVerdict(0.0, False, None, error="no response text")
    table = RequestTable.build(self.config.model, self.template_hash, [conversation],
                               [[response]], [[criterion]], [[True]], pitfall_mode, self.template)
    outcomes = self._resolve(table, progress=False)
    scores, valid = table.fill(outcomes)
    o = outcomes[table.keys()[0]]
    return JudgeVerdict(float(scores[0, 0, 0]), bool(valid[0, 0, 0]), o.met, o.explanation,
                        o.error, o.requests, o.cached)

  def preflight(self, conversation=None, criterion=None) -> dict:
    """One request now. Raises JudgeUnavailable, naming base_url and model, when the endpoint
    is unreachable, refuses the key (401/403), does not know the model, rejects the request, or
    answers 200 with no verdict in it (an unparseable reply, several verdicts, criteria_met
    not a boolean: every later verdict would be invalid too); returns {"latency_s", "valid",
    "error"} otherwise. A refusal is logged, not fatal: a judge may decline one prompt and grade
    the rest (the loop's max_invalid_frac guards that).

    With `conversation` and `criterion` (the training data's first prompt and criterion) the
    request is one the run will send, rendered the same way, with an empty response; without
    them a fixed general-knowledge probe. The cache is neither read nor written.
    """
    if conversation is None or criterion is None:
      conversation = "Is the sky blue on a clear day?"
      criterion = templates.JudgeCriterion("The response says that the sky is blue.", 1.0,
                                           "accuracy")
    table = RequestTable.build(self.config.model, self.template_hash, [conversation], [[""]],
                               [[criterion]], [[True]], "signed", self.template)
    prompt = table.prompt(table.keys()[0])
    start = time.monotonic()
    outcome = self._ask(prompt)
    c = self.config
    where = f"judge endpoint {c.base_url} (model {c.model!r})"
    if outcome.ok or outcome.kind == Refusal.kind:
      if not outcome.ok:
        log.warning("%s declined the preflight request: %s", where, outcome.error)
      return {"latency_s": time.monotonic() - start, "valid": outcome.ok, "error": outcome.error}
    raise JudgeUnavailable(self._redact(f"{where}: {_diagnosis(outcome, c)}"))

  # -- asking ----------------------------------------------------------------------------------

  def _resolve(self, table: RequestTable, progress: bool) -> dict:
    """Outcome per distinct request key: from the cache, else asked (in parallel)."""
    outcomes = {k: Outcome.from_cache(met, self._redact(text))  # a cache written before redaction
                for k, (met, text) in self.cache.get_many(table.keys()).items()}
    missing = [k for k in table.keys() if k not in outcomes]
    futures = {self._pool.submit(self._ask_and_store, k, table.prompt(k)): k for k in missing}
    done = concurrent.futures.as_completed(futures)
    for future in tqdm(done, total=len(futures), desc="judge", disable=not progress):
      outcomes[futures[future]] = future.result()
    return outcomes

  def _ask_and_store(self, key: bytes, prompt: str) -> Outcome:
    try:
      outcome = self._ask(prompt)
    except Exception as e:  # a bug on one request must not sink the batch's paid verdicts
      return Outcome.failed("internal error", self._redact(f"{type(e).__name__}: {e}"))
    if outcome.ok:
      try:
        self.cache.put(key, outcome.met, outcome.explanation)  # redacted by _ask
      except Exception as e:
        log.warning("judge cache write failed (%s); the verdict is kept for this step",
                    self._redact(str(e)))
        outcome.cache_error = True
    return outcome

  def _ask(self, prompt: str) -> Outcome:
    """One request with retries; what the endpoint said comes back redacted (the boundary)."""
    outcome = self._attempts(prompt)
    outcome.error = self._redact(outcome.error)
    outcome.explanation = self._redact(outcome.explanation)
    return outcome

  def _attempts(self, prompt: str) -> Outcome:
    """One request with retries: backoff with jitter, Retry-After on 429/503."""
    prompt, _ = valid_utf8(prompt)  # RequestTable counted the replacements; this only guards
    body = json.dumps(self._body(prompt), ensure_ascii=True).encode("ascii")
    outcome = Outcome()
    retry_after = None
    for attempt in range(self.config.max_retries + 1):
      if attempt:
        outcome.retries += 1
        self._sleep(self._delay(attempt - 1, retry_after))
      retry_after = None
      outcome.requests += 1
      try:
        reply = self._transport.request("POST", "/chat/completions", body, self._headers())
      except TransportError as e:
        outcome.fail(e.kind, str(e))
        continue
      if reply.status != 200:
        outcome.fail(f"HTTP {reply.status}", f"HTTP {reply.status}: {error_message(reply.body)}")
        if reply.status not in _RETRYABLE_STATUS and reply.status < 500:
          break  # asking again cannot fix a bad request, a bad key or an unknown model
        if reply.status in (429, 503):
          retry_after = retry_after_seconds(reply.headers.get("Retry-After"))
        continue
      try:
        met, explanation = parse_verdict(completion_content(reply.body))
      except Refusal as e:
        outcome.fail(e.kind, str(e))
        break
      except MalformedVerdict as e:
        outcome.fail(e.kind, str(e))
        continue
      outcome.succeed(met, explanation)
      break
    return outcome

  def _body(self, prompt: str) -> dict:
    c = self.config
    body = {"model": c.model, "messages": [{"role": "user", "content": prompt}],
            "temperature": c.temperature}
    if c.max_tokens:
      body["max_completion_tokens"] = c.max_tokens
    if c.reasoning_effort:
      body["reasoning_effort"] = c.reasoning_effort
    return body

  def _headers(self) -> dict:
    headers = {"Content-Type": "application/json"}
    key = self.config.api_key()  # read now, never kept
    if key:
      headers["Authorization"] = f"Bearer {key}"
    return headers

  def _redact(self, text: str) -> str:
    return self.config.redact(text)

  def _delay(self, attempt: int, retry_after: float | None) -> float:
    c = self.config
    delay = min(c.backoff_max_s, c.backoff_s * 2 ** attempt)
    delay *= 1.0 + c.jitter * (2.0 * self._rng.random() - 1.0)
    if retry_after is not None:
      delay = max(delay, min(retry_after, c.retry_after_max_s))
    return max(0.0, delay)


def _diagnosis(outcome: Outcome, c: JudgeConfig) -> str:
  kind = outcome.kind
  if kind in ("HTTP 401", "HTTP 403"):
    state = "is set" if c.api_key() else "is NOT set"
    return (f"the endpoint refuses the API key ({outcome.error}); the key is read from "
            f"${c.api_key_env}, which {state}")
  if kind == "HTTP 404" or (kind == "HTTP 400" and "model" in outcome.error.lower()):
    return (f"unknown model, or base_url is not the API root (e.g. a missing /v1): "
            f"{outcome.error}")
  if kind.startswith("HTTP 4"):
    return f"the endpoint rejects the judge request: {outcome.error}"
  if kind.startswith("HTTP"):
    return f"the endpoint keeps failing ({outcome.requests} attempts): {outcome.error}"
  if kind in (MalformedVerdict.kind, UnparseableReply.kind, WrongVerdictCount.kind):
    return (f"it answers, but with no usable verdict ({kind}, {outcome.requests} attempts): "
            f"{outcome.error}. Is base_url an OpenAI-compatible chat-completions API, and does "
            "the model follow the judge template's JSON format?")
  return f"unreachable after {outcome.requests} attempts: {outcome.error}"
