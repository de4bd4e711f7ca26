"""Program graders on decoded text: regular expressions, phrases, length bounds."""
from __future__ import annotations

import re
from typing import Sequence

from focal.graders.base import INVALID_NO_TEXT, Verdict


def _bool(met: bool, reason: str) -> Verdict:
  return Verdict(1.0 if met else 0.0, True, reason)


class RegexGrader:
  """Met when `pattern` matches somewhere in the text (or the whole text with fullmatch)."""

  def __init__(self, pattern: str, flags: int = 0, fullmatch: bool = False):
    # Compile now: a bad pattern is a configuration error, not an invalid verdict.
    self.regex = re.compile(pattern, flags)
    self.fullmatch = fullmatch

  def grade(self, text: str | None) -> Verdict:
    if text is None:
      return INVALID_NO_TEXT
    m = self.regex.fullmatch(text) if self.fullmatch else self.regex.search(text)
    return _bool(m is not None, f"/{self.regex.pattern}/ {'matched' if m else 'did not match'}")


class ContainsGrader:
  """Met when any (mode='any') or every (mode='all') phrase occurs in the text."""

  def __init__(self, phrases: str | Sequence[str], mode: str = "any",
               case_sensitive: bool = False, whole_word: bool = False):
    phrases = [phrases] if isinstance(phrases, str) else list(phrases)
    if not phrases or any(not p for p in phrases):
      raise ValueError(f"ContainsGrader needs non-empty phrases, got {phrases!r}")
    if mode not in ("any", "all"):
      raise ValueError(f"mode must be 'any' or 'all', got {mode!r}")
    self.phrases, self.mode = phrases, mode
    flags = 0 if case_sensitive else re.IGNORECASE
    wrap = (lambda p: rf"(?<!\w){re.escape(p)}(?!\w)") if whole_word else re.escape
    self._regexes = [re.compile(wrap(p), flags) for p in phrases]

  def grade(self, text: str | None) -> Verdict:
    if text is None:
      return INVALID_NO_TEXT
    found = [bool(r.search(text)) for r in self._regexes]
    met = any(found) if self.mode == "any" else all(found)
    missing = [p for p, f in zip(self.phrases, found) if not f]
    return _bool(met, f"missing {missing}" if missing else "all phrases found")


class LengthGrader:
  """Met when the length (characters or whitespace-separated words) lies in [min_len, max_len]."""

  def __init__(self, min_len: int | None = None, max_len: int | None = None, unit: str = "chars"):
    if unit not in ("chars", "words"):
      raise ValueError(f"unit must be 'chars' or 'words', got {unit!r}")
    if min_len is None and max_len is None:
      raise ValueError("LengthGrader needs min_len, max_len or both")
    if min_len is not None and max_len is not None and min_len > max_len:
      raise ValueError(f"min_len {min_len} > max_len {max_len}")
    self.min_len, self.max_len, self.unit = min_len, max_len, unit

  def grade(self, text: str | None) -> Verdict:
    if text is None:
      return INVALID_NO_TEXT
    n = len(text) if self.unit == "chars" else len(text.split())
    met = (self.min_len is None or n >= self.min_len) and (self.max_len is None or n <= self.max_len)
    return _bool(met, f"{n} {self.unit}")


_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def rule_grader(spec):
  """A grader from a rule spec (the `rule` field of rubric JSONL criteria):

    {"regex": PATTERN, "flags": "ims"?, "fullmatch": bool?}
    {"contains": PHRASE | [PHRASES], "mode": "any"|"all"?, "case_sensitive": bool?,
     "whole_word": bool?}
    {"length": {"min": N?, "max": N?, "unit": "chars"|"words"?}}

  Raises ValueError naming what is wrong (a rubric file's error, not an invalid verdict).
  """
  if not isinstance(spec, dict) or len(spec.keys() & {"regex", "contains", "length"}) != 1:
    raise ValueError(f"a rule is an object with exactly one of 'regex', 'contains', 'length'; "
                     f"got {spec!r}")
  if "regex" in spec:
    extra = set(spec) - {"regex", "flags", "fullmatch"}
    flags = spec.get("flags", "")
    if extra or not isinstance(spec["regex"], str) or set(flags) - set(_FLAGS):
      raise ValueError(f"regex rule {spec!r}: fields regex (str), flags (of 'ims'), fullmatch")
    try:
      return RegexGrader(spec["regex"], sum(_FLAGS[f] for f in set(flags)),
                         bool(spec.get("fullmatch", False)))
    except re.error as e:
      raise ValueError(f"regex rule {spec['regex']!r}: {e}") from None
  if "contains" in spec:
    extra = set(spec) - {"contains", "mode", "case_sensitive", "whole_word"}
    if extra:
      raise ValueError(f"contains rule: unknown field(s) {sorted(extra)}")
    return ContainsGrader(spec["contains"], spec.get("mode", "any"),
                          bool(spec.get("case_sensitive", False)),
                          bool(spec.get("whole_word", False)))
  bounds = spec["length"]
  if len(spec) != 1 or not isinstance(bounds, dict) or set(bounds) - {"min", "max", "unit"}:
    raise ValueError(f"length rule {spec!r}: expected {{'length': {{min, max, unit}}}}")
  return LengthGrader(bounds.get("min"), bounds.get("max"), bounds.get("unit", "chars"))
