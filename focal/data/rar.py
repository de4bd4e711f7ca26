"""RaR-Medicine / RaR-Science (Rubrics as Rewards) in the `rubric_prompts` format.

Source records (JSONL, one per line):
  {question, reference_answer, question_source, rubric: [{title, description, weight: int}]}

Mapping rule. Each `description` starts with a label that fixes the category:
  "Essential Criteria: " -> 0, required=True
  "Important Criteria: " -> 1
  "Optional Criteria: "  -> 2
  "Pitfall Criteria: "   -> 3, weight = -|weight| (negative even when the file
                                gives a positive number)
A non-pitfall criterion must have a weight >= 0. Any other label is an error
naming file, line and field. The criterion text is the description without
its label (the category carries it, and `category_name` keeps the label); the title, a short
form of the description, is kept for the judge's context.
"""
from __future__ import annotations

import re


from focal.data.records import Fields, read_jsonl
from focal.data.rubric_prompts import (RubricPromptsBuilder, builder_configs, check_weights,
                                       criterion, user_turn)

ESSENTIAL, IMPORTANT, OPTIONAL, PITFALL = 0, 1, 2, 3
CATEGORY_IDS = {"Essential": ESSENTIAL, "Important": IMPORTANT, "Optional": OPTIONAL,
                "Pitfall": PITFALL}
CATEGORY_NAMES = {v: k for k, v in CATEGORY_IDS.items()}

_LABEL = re.compile(r"^\s*([A-Za-z]+) Criteria:\s*")


def parse_criterion(item: dict, fields: Fields, field: str) -> dict:
  """One rubric item -> {text, weight, category, required} by the mapping rule above."""
  if not isinstance(item, dict):
    raise fields.error(field, f"expected an object, got {type(item).__name__}")
  title = fields.get(item, "title", str, f"{field}.title")
  description = fields.get(item, "description", str, f"{field}.description")
  weight = fields.number(item, "weight", f"{field}.weight")
  match = _LABEL.match(description)
  label = match.group(1) if match else None
  if label not in CATEGORY_IDS:
    shown = description[:40] + ("..." if len(description) > 40 else "")
    raise fields.error(f"{field}.description",
                       f"unknown label in {shown!r}: expected one of "
                       f"{[k + ' Criteria: ' for k in CATEGORY_IDS]}")
  category = CATEGORY_IDS[label]
  if category == PITFALL:
    weight = -abs(weight)
  elif weight < 0:
    raise fields.error(f"{field}.weight",
                       f"{label} criterion has negative weight {weight}; only pitfalls are negative")
  return criterion(description[match.end():].strip(), weight, category, category == ESSENTIAL,
                   title=title, category_name=label)


def parse_rar_file(path: str) -> list[dict]:
  """All records of a RaR JSONL file as `rubric_prompts` examples (without prompt_id)."""
  examples = []
  for line, rec in read_jsonl(path):
    fields = Fields(path, line)
    question = fields.get(rec, "question", str, "question")
    reference = fields.get(rec, "reference_answer", str, "reference_answer", optional=True)
    source = fields.get(rec, "question_source", str, "question_source", optional=True)
    rubric = fields.get(rec, "rubric", list, "rubric")
    criteria = [parse_criterion(item, fields, f"rubric[{j}]") for j, item in enumerate(rubric)]
    check_weights(criteria, path, line, "rubric")
    examples.append({"source": source or "", "prompt": question, "messages": user_turn(question),
                     "reference": reference or "", "criteria": criteria})
  return examples


class Rar(RubricPromptsBuilder):
  """RaR-Medicine / RaR-Science rubric prompts, from local JSONL files."""

  BUILDER_CONFIGS = builder_configs(default="Any RaR-format file.", medicine="RaR-Medicine.",
                                    science="RaR-Science.")
  parse_file = staticmethod(parse_rar_file)
