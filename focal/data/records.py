"""Reading JSONL source files with errors that name the file, line and field.

Every loader in `focal.data` parses its whole source before anything is
written, so a bad record stops the build with a `RecordError` and no output.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator


class RecordError(ValueError):
  """A bad source record: `path`, 1-based `line` and dotted `field` say where."""

  def __init__(self, path: str, line: int, field: str | None, message: str):
    self.path, self.line, self.field = path, line, field
    # line 0 means "not from a file line" (records passed in memory).
    where = (f"{path}:{line}" if line else path) + (f": field '{field}'" if field else "")
    super().__init__(f"{where}: {message}")


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
  """Yields (line number, object) for each non-blank line of a JSONL file."""
  path = os.fspath(path)
  # Bytes, decoded line by line, so that bad UTF-8 is reported with its line.
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise RecordError(path, lineno, None,
                          f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                          "re-encode the file as UTF-8") from None
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise RecordError(path, lineno, None, f"malformed JSON ({e.msg} at column {e.colno})") \
            from None
      if not isinstance(obj, dict):
        raise RecordError(path, lineno, None, f"expected a JSON object, got {type(obj).__name__}")
      yield lineno, obj


class Fields:
  """Typed access to one record's fields, raising `RecordError` on a missing or mistyped one."""

  def __init__(self, path: str, line: int):
    self.path, self.line = path, line

  def error(self, field: str | None, message: str) -> RecordError:
    return RecordError(self.path, self.line, field, message)

  def get(self, obj: dict, key: str, kind: type | tuple[type, ...], field: str,
          optional: bool = False) -> Any:
    if key not in obj or (optional and obj[key] is None):
      if optional:
        return None
      raise self.error(field, "missing")
    value = obj[key]
    # bool is an int subclass in Python; a JSON true is never a valid number here.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
      raise self.error(field, f"expected {_kind_name(kind)}, got {type(value).__name__} {value!r}")
    return value

  def number(self, obj: dict, key: str, field: str) -> float:
    value = float(self.get(obj, key, (int, float), field))
    if not math.isfinite(value):
      raise self.error(field, f"must be a finite number, got {value}")
    return value

  def str_list(self, obj: dict, key: str, field: str, optional: bool = False) -> list[str]:
    values = self.get(obj, key, list, field, optional=optional)
    if values is None:
      return []
    for i, v in enumerate(values):
      if not isinstance(v, str):
        raise self.error(f"{field}[{i}]", f"expected str, got {type(v).__name__} {v!r}")
    return values


class UniqueField:
  """A field whose values must not repeat within a file (e.g. a dataset's prompt ids)."""

  def __init__(self, path: str, field: str):
    self.path, self.field = path, field
    self._first_line: dict[Any, int] = {}

  def add(self, value, line: int) -> None:
    """Records `value` seen on `line`; raises `RecordError` naming both lines on a repeat."""
    first = self._first_line.setdefault(value, line)
    if first != line:
      raise RecordError(self.path, line, self.field,
                        f"duplicate value {value!r}, first seen on line {first}; each record "
                        f"needs its own {self.field}")


def chat_turns(fields: Fields, rec: dict, key: str = "prompt",
               roles: tuple[str, ...] | None = None) -> list[dict]:
  """A record's non-empty conversation `rec[key]`: [{role, content}] strings, roles checked
  against `roles` when given; errors name the turn and field."""
  turns = fields.get(rec, key, list, key)
  if not turns:
    raise fields.error(key, "the conversation is empty")
  for i, msg in enumerate(turns):
    if not isinstance(msg, dict):
      raise fields.error(f"{key}[{i}]", f"expected an object, got {type(msg).__name__}")
    role = fields.get(msg, "role", str, f"{key}[{i}].role")
    if roles is not None and role not in roles:
      raise fields.error(f"{key}[{i}].role", f"unknown role {role!r}; expected one of {roles}")
    fields.get(msg, "content", str, f"{key}[{i}].content")
  return turns


def _as_tuple(kind) -> tuple:
  return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
  return " or ".join(k.__name__ for k in _as_tuple(kind))


def user_turn(question: str) -> str:
  """The `messages` field of a single-question prompt."""
  return json.dumps([{"role": "user", "content": question}], ensure_ascii=False)
