"""From the loop's arrays to distinct judge requests and back, with the per-call counters.

A slot is (prompt b, rollout g, criterion k) with mask[b, k]. Slots that would send the same
request (same model, template, conversation, response, criterion and wording) share one key
and are asked once; the key is also the verdict cache key.

A response holding bytes that are not valid UTF-8 (a policy samples any bytes; its decoder
keeps them as lone surrogates) is sent as valid UTF-8, each such byte replaced by U+FFFD, and
the replacements are counted (`GradeStats.replaced_chars`, logged as train/judge_replaced_chars):
a strict server would refuse the request otherwise, and the judge sees what the key says.
"""
from __future__ import annotations

import dataclasses
import email.utils
import math
import re
import time
from typing import Mapping

import numpy as np

from focal.graders.judge import templates
from focal.graders.judge.cache import digest, verdict_key
from focal.rubric import PITFALL_MODES

_CRITERION_FIELDS = ("text", "weight", "category", "title", "tags", "required")


@dataclasses.dataclass
class Outcome:
  """What became of one distinct request."""
  met: bool | None = None      # the judge's answer to the question as asked
  explanation: str = ""
  kind: str = ""               # last error kind ("timeout", "HTTP 500", "refusal", ...)
  error: str = ""
  requests: int = 0            # HTTP attempts
  retries: int = 0
  cached: bool = False
  cache_error: bool = False

  @property
  def ok(self) -> bool:
    return self.met is not None

  def fail(self, kind: str, error: str) -> None:
    self.kind, self.error = kind, error

  def succeed(self, met: bool, explanation: str) -> None:
    self.met, self.explanation, self.kind, self.error = met, explanation, "", ""

  @classmethod
  def from_cache(cls, met: bool, explanation: str) -> "Outcome":
    return cls(met=met, explanation=explanation, cached=True)

  @classmethod
  def failed(cls, kind: str, error: str) -> "Outcome":
    return cls(kind=kind, error=error)


@dataclasses.dataclass
class GradeStats:
  """Counters of one `grade` call (or, summed, of a client's life)."""
  slots: int = 0         # (rollout, criterion) slots with mask True
  no_response: int = 0   # of those, slots whose response is None (invalid, not asked)
  unique: int = 0        # distinct requests among the answerable slots
  cache_hits: int = 0    # distinct requests answered by the verdict cache
  requests: int = 0      # HTTP attempts sent
  retries: int = 0
  invalid: int = 0       # slots with valid=False (no_response included)
  seconds: float = 0.0
  replaced_chars: int = 0  # response characters that were not valid UTF-8, sent as U+FFFD
  errors: dict = dataclasses.field(default_factory=dict)  # failure kind -> distinct requests

  @property
  def invalid_frac(self) -> float:
    return self.invalid / self.slots if self.slots else 0.0

  def add(self, other: "GradeStats") -> None:
    for f in dataclasses.fields(self):
      if f.name != "errors":
        setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
    for kind, n in other.errors.items():
      self.errors[kind] = self.errors.get(kind, 0) + n

  def as_dict(self) -> dict:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "errors"}
    out["invalid_frac"] = self.invalid_frac
    out.update({f"errors/{k}": v for k, v in sorted(self.errors.items())})
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def valid_utf8(text: str) -> tuple[str, int]:
  """(`text` with every lone surrogate replaced by U+FFFD, how many were replaced). A
  surrogateescape decode keeps each byte that is not valid UTF-8 as one lone surrogate, so
  each such byte becomes exactly one replacement character."""
  return _SURROGATE.subn(REPLACEMENT, text)


def to_criterion(obj, where: str) -> templates.JudgeCriterion:
  """A JudgeCriterion from a criterion dict, with errors naming `where` and the field."""
  if isinstance(obj, templates.JudgeCriterion):
    return obj
  if not isinstance(obj, Mapping):
    raise ValueError(f"{where}: a criterion must be a dict, got {type(obj).__name__}")
  unknown = sorted(set(obj) - set(_CRITERION_FIELDS))
  if unknown:
    raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {', '.join(_CRITERION_FIELDS)}")
  text, weight, category = obj.get("text"), obj.get("weight"), obj.get("category", "")
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"{where}.text must be a non-empty string, got {text!r}")
  if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) \
      or not math.isfinite(weight):
    raise ValueError(f"{where}.weight must be a finite number, got {weight!r}")
  if isinstance(category, bool) or not isinstance(category, (str, int, np.integer)):
    raise ValueError(f"{where}.category must be a name or an integer id, got {category!r}")
  title, tags = obj.get("title", "") or "", obj.get("tags", ()) or ()
  if not isinstance(title, str) or isinstance(tags, str) \
      or not all(isinstance(t, str) for t in tags):
    raise ValueError(f"{where}: title must be a string and tags a list of strings")
  return templates.JudgeCriterion(text, float(weight), str(category), title, tuple(tags))


@dataclasses.dataclass
class RequestTable:
  """The distinct requests of one `grade` call and the slots each one answers."""
  shape: tuple
  slots: dict          # key -> [(b, g, k)]
  first: dict          # key -> (b, g, k), the slot whose texts render the request
  reworded: np.ndarray  # [B, K] bool: asked as avoidance
  masked: int
  no_response: int
  replaced_chars: int
  conversations: list
  responses: list
  criteria: dict       # (b, k) -> JudgeCriterion
  template: object

  @classmethod
  def build(cls, model, template_hash, conversations, responses, criteria, mask, pitfall_mode,
            template) -> "RequestTable":
    if pitfall_mode not in PITFALL_MODES:
      raise ValueError(f"pitfall_mode must be one of {PITFALL_MODES}, got {pitfall_mode!r}")
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
      raise ValueError(f"mask must be [B, K], got shape {mask.shape}")
    b, k = mask.shape
    if not len(conversations) == len(responses) == len(criteria) == b:
      raise ValueError(f"conversations, responses and criteria need B={b} entries (mask [B, K]), "
                       f"got {len(conversations)}, {len(responses)}, {len(criteria)}")
    groups = {len(r) for r in responses}
    if len(groups) > 1:
      raise ValueError(f"every prompt needs the same number of rollouts G, got {sorted(groups)}")
    g = groups.pop() if groups else 0
    responses, replaced = _valid_responses(responses)
    table = cls((b, g, k), {}, {}, np.zeros((b, k), bool), int(mask.sum()) * g, 0, replaced,
                list(conversations), responses, {}, template)
    for i in range(b):
      conv = digest(conversations[i])
      rollouts = [None if r is None else digest(r) for r in responses[i]]
      for j in np.flatnonzero(mask[i]):
        if j >= len(criteria[i]):
          raise ValueError(f"criteria[{i}] has {len(criteria[i])} entries but mask[{i}] marks "
                           f"slot {j}")
        crit = to_criterion(criteria[i][j], f"criteria[{i}][{j}]")
        table.criteria[i, j] = crit
        table.reworded[i, j] = templates.asks_avoidance(template, crit, pitfall_mode)
        crit_digest = digest(crit.key_fields())
        for r, resp in enumerate(rollouts):
          if resp is None:
            table.no_response += 1
            continue
          key = verdict_key(model, template_hash, conv, resp, crit_digest, table.reworded[i, j])
          table.slots.setdefault(key, []).append((i, r, j))
          table.first.setdefault(key, (i, r, j))
    return table

  def keys(self) -> list:
    return list(self.slots)

  def prompt(self, key: bytes) -> str:
    i, r, j = self.first[key]
    return self.template.render(self.conversations[i], self.responses[i][r], self.criteria[i, j],
                                bool(self.reworded[i, j]))

  def fill(self, outcomes: dict) -> tuple[np.ndarray, np.ndarray]:
    """scores [B, G, K] float32 and valid [B, G, K] bool from the outcome of every key."""
    scores = np.zeros(self.shape, np.float32)
    valid = np.zeros(self.shape, bool)
    for key, slots in self.slots.items():
      o = outcomes[key]
      if not o.ok:
        continue
      for i, r, j in slots:
        valid[i, r, j] = True
        scores[i, r, j] = float(o.met != bool(self.reworded[i, j]))
    return scores, valid

  def stats(self, outcomes: dict, valid: np.ndarray, seconds: float) -> GradeStats:
    s = GradeStats(slots=self.masked, no_response=self.no_response, unique=len(self.slots),
                   invalid=self.masked - int(valid.sum()), seconds=seconds,
                   replaced_chars=self.replaced_chars)
    for o in outcomes.values():
      s.cache_hits += o.cached
      s.requests += o.requests
      s.retries += o.retries
      kinds = ([] if o.ok else [o.kind]) + (["cache write failed"] if o.cache_error else [])
      for kind in kinds:
        s.errors[kind] = s.errors.get(kind, 0) + 1
    return s


def _valid_responses(responses) -> tuple[list, int]:
  """[B][G] responses as valid UTF-8 text (None kept), and the characters replaced."""
  out, replaced = [], 0
  for row in responses:
    clean = []
    for r in row:
      if r is not None:
        r, n = valid_utf8(r)
        replaced += n
      clean.append(r)
    out.append(clean)
  return out, replaced


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
  """Seconds a Retry-After header asks for: a number, or an HTTP-date (RFC 9110)."""
  if not value:
    return None
  try:
    seconds = float(value)
  except ValueError:
    try:
      when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
      return None
    seconds = when - (time.time() if now is None else now)
  return max(0.0, seconds) if math.isfinite(seconds) else None
