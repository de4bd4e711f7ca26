"""The project's own rubric JSONL format, for datasets that are neither RaR nor HealthBench.

One JSON object per line:

  {"prompt": "question text" | [{"role": "system"|"user"|"assistant", "content": "..."}],
   "id": "optional, kept as the example's source",
   "reference": "optional reference answer",
   "criteria": [{"text": "what the response must do",
                 "weight": 5,                     # signed: negative = pitfall
                 "category": "accuracy" | 0,      # a name, or an integer id
                 "required": false,               # optional: a strict completion needs it
                 "title": "optional short name",  # optional: context for the judge
                 "rule": {"regex": "...", "flags": "i"} | {"contains": ["a", "b"], "mode": "all"}
                         | {"length": {"min": 1, "max": 50, "unit": "words"}}}]}  # optional

A prompt given as a string is one user turn. Category names get ids in sorted order across
every file of one build (so splits share ids); integer categories keep their ids. `rule`
(needed only with `grader.kind=rules`) is checked when the file is parsed. Every error names
the file, the line and the field.
"""
from __future__ import annotations

import json


from focal.data.records import Fields, RecordError, chat_turns, read_jsonl
from focal.data.rubric_prompts import (RubricPromptsBuilder, builder_configs, check_weights,
                                       criterion, render_chat)
from focal.graders.rules import rule_grader

ROLES = ("system", "developer", "user", "assistant")


def parse_messages(rec: dict, fields: Fields) -> list[dict]:
  prompt = rec.get("prompt")
  if isinstance(prompt, str):
    if not prompt.strip():
      raise fields.error("prompt", "the prompt is empty")
    return [{"role": "user", "content": prompt}]
  messages = chat_turns(fields, rec, roles=ROLES)
  return [{"role": m["role"], "content": m["content"]} for m in messages]


def parse_criterion(item, fields: Fields, field: str) -> dict:
  if not isinstance(item, dict):
    raise fields.error(field, f"expected an object, got {type(item).__name__}")
  text = fields.get(item, "text", str, f"{field}.text")
  weight = fields.number(item, "weight", f"{field}.weight")
  category = fields.get(item, "category", (str, int), f"{field}.category")
  if isinstance(category, int) and category < 0:
    raise fields.error(f"{field}.category", f"must be >= 0, got {category}")
  required = item.get("required", False)
  if not isinstance(required, bool):
    raise fields.error(f"{field}.required", f"expected true or false, got {required!r}")
  title = fields.get(item, "title", str, f"{field}.title", optional=True) or ""
  rule = item.get("rule")
  if rule is not None:
    try:
      rule_grader(rule)
    except (TypeError, ValueError) as e:
      raise fields.error(f"{field}.rule", str(e)) from None
  # The category is resolved to an id once every file is parsed (see RubricJsonl.finalize).
  return criterion(text, weight, -1, required, title=title, category_name=str(category),
                   rule="" if rule is None else json.dumps(rule, sort_keys=True)) | {
                       "_category": category}


def parse_rubric_jsonl_file(path: str) -> list[dict]:
  """All records of a rubric JSONL file as `rubric_prompts` examples (category ids pending)."""
  examples = []
  for line, rec in read_jsonl(path):
    fields = Fields(path, line)
    messages = parse_messages(rec, fields)
    source = rec.get("id", "")
    reference = fields.get(rec, "reference", str, "reference", optional=True) or ""
    items = fields.get(rec, "criteria", list, "criteria")
    criteria = [parse_criterion(item, fields, f"criteria[{j}]") for j, item in enumerate(items)]
    check_weights(criteria, path, line, "criteria")
    examples.append({"source": str(source), "prompt": render_chat(messages),
                     "messages": json.dumps(messages, ensure_ascii=False),
                     "reference": reference, "criteria": criteria, "_where": (path, line)})
  return examples


class RubricJsonl(RubricPromptsBuilder):
  """Rubric prompts in the project's own JSONL format (see the module docstring)."""

  BUILDER_CONFIGS = builder_configs(default="A rubric JSONL file.")
  parse_file = staticmethod(parse_rubric_jsonl_file)

  def finalize(self, parsed):
    names = sorted({c["_category"] for exs in parsed.values() for ex in exs
                    for c in ex["criteria"] if isinstance(c["_category"], str)})
    if names and any(isinstance(c["_category"], int) for exs in parsed.values() for ex in exs
                     for c in ex["criteria"]):
      path, line = next(ex["_where"] for exs in parsed.values() for ex in exs)
      raise RecordError(path, line, "criteria[].category",
                        "mixes category names and integer ids; use one or the other")
    ids = {name: i for i, name in enumerate(names)}
    for exs in parsed.values():
      for ex in exs:
        del ex["_where"]
        for c in ex["criteria"]:
          raw = c.pop("_category")
          c["category"] = ids[raw] if isinstance(raw, str) else raw
    return parsed
