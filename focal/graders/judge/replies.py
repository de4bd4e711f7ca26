"""Reading a judge's answer: the chat-completion body, then the verdict JSON inside it.

Only one JSON object whose `criteria_met` is a real boolean is a verdict. Everything else
raises a `MalformedVerdict`, which the client turns into `valid=False` for that one slot; its
`kind` names the cause in the run's "errors by kind":

  unparseable reply     the body is not a chat completion, or its content is empty, null or
                        prose with no JSON verdict in it
  wrong verdict count   not exactly one verdict: `choices` with 0 or several entries, or
                        content holding several verdicts (a list, or one object after another)
  malformed verdict     a verdict object whose criteria_met is not a boolean ("no", 2, null)
  refusal               the judge declined (a `refusal` field)
"""
from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL | re.IGNORECASE)


class MalformedVerdict(ValueError):
  """The judge answered, but with no usable verdict."""
  kind = "malformed verdict"


class UnparseableReply(MalformedVerdict):
  """No verdict could be read from the reply at all."""
  kind = "unparseable reply"


class WrongVerdictCount(MalformedVerdict):
  """The reply holds a number of verdicts other than one."""
  kind = "wrong verdict count"


class Refusal(MalformedVerdict):
  """The judge declined (a `refusal` field): asking again would most likely decline again."""
  kind = "refusal"


def completion_content(body: bytes) -> str:
  """The assistant message's text from a /chat/completions response body."""
  try:
    obj = json.loads(body)
    choices = obj["choices"]
  except (ValueError, KeyError, TypeError):
    raise UnparseableReply(f"not a chat completion body: {body[:200]!r}") from None
  if not isinstance(choices, list) or len(choices) != 1:
    n = len(choices) if isinstance(choices, list) else type(choices).__name__
    raise WrongVerdictCount(f"the reply holds {n} choices; one verdict was asked for")
  message = choices[0].get("message") if isinstance(choices[0], dict) else None
  if not isinstance(message, dict):
    raise UnparseableReply(f"choices[0].message is {type(message).__name__}, not an object")
  content = message.get("content")
  if isinstance(message.get("refusal"), str) and message["refusal"] and not content:
    raise Refusal(f"the judge refused: {message['refusal'][:200]!r}")
  if isinstance(content, list):  # content parts: keep the text ones
    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
  if not isinstance(content, str) or not content.strip():
    finish = obj["choices"][0].get("finish_reason") if isinstance(obj["choices"][0], dict) else None
    raise UnparseableReply(f"message.content is {content!r} (finish_reason={finish!r})")
  return content


def parse_verdict(text: str) -> tuple[bool, str]:
  """(criteria_met, explanation) from the judge's text; tolerates ```json fences and chatter
  around one JSON object."""
  candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text.strip()]
  start, end = text.find("{"), text.rfind("}")
  if 0 <= start < end:
    candidates.append(text[start:end + 1])
  for candidate in candidates:
    try:
      obj = json.loads(candidate)
    except ValueError:
      continue
    if isinstance(obj, dict) and "criteria_met" in obj:
      return verdict_from_obj(obj)
    if isinstance(obj, list) and any(isinstance(o, dict) and "criteria_met" in o for o in obj):
      raise WrongVerdictCount(f"the reply holds a list of {len(obj)} verdicts; one was asked "
                              f"for: {text[:200]!r}")
  n = text.count('"criteria_met"')
  if n > 1:
    raise WrongVerdictCount(f"the reply holds {n} verdicts; one was asked for: {text[:200]!r}")
  raise UnparseableReply(f"no JSON object with criteria_met in {text[:200]!r}")


def verdict_from_obj(obj: Any) -> tuple[bool, str]:
  """(criteria_met, explanation) of a decoded verdict object; MalformedVerdict unless
  criteria_met is a JSON boolean."""
  met = obj.get("criteria_met") if isinstance(obj, dict) else None
  if not isinstance(met, bool):
    raise MalformedVerdict(f"criteria_met is {met!r}, not a boolean")
  explanation = obj.get("explanation", "")
  return met, explanation if isinstance(explanation, str) else json.dumps(explanation)


def error_message(body: bytes) -> str:
  """The server's own words from an error body (OpenAI/vLLM shapes), else its first bytes."""
  try:
    obj = json.loads(body)
  except ValueError:
    return body[:200].decode("utf-8", "replace")
  err = obj.get("error", obj) if isinstance(obj, dict) else obj
  if isinstance(err, dict) and isinstance(err.get("message"), str):
    return err["message"][:300]
  return json.dumps(err)[:300] if not isinstance(err, str) else err[:300]
