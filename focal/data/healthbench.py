"""HealthBench: loader into `rubric_prompts`, official scorer, and array converter.

Source records (JSONL):
  {prompt: [{role, content}], prompt_id: str,
   rubrics: [{criterion, points: int (negative = undesirable), tags: ["axis:...", ...]}],
   example_tags: [...], ideal_completions_data: optional}

Mapping rule: weight = points (signed); category = the item's single `axis:`
tag by the fixed table `AXES` (an unknown, missing or repeated axis is an
error); required = False for every item (HealthBench has no required flag, so
a strict completion means passing every criterion, see rubric.strict_targets);
reference = the physician's ideal completion when the record has one.

The scorer follows openai simple-evals: an example scores
sum(points of met items) / sum(positive points), not clipped per example; a
dataset score is the mean clipped to [0, 1]; a tag's score uses the same
formula over the items carrying the tag (rubric-level tags) or the example's
score (example-level tags), skipping examples with no positive points there.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from focal.data.records import Fields, UniqueField, chat_turns, read_jsonl
from focal.data.rubric_prompts import (RubricPromptsBuilder, builder_configs, check_weights,
                                       criterion, render_chat)
from focal.rubric import RubricBatch

# Fixed ids: they index per-category state and metrics, so never renumber them.
AXES = ("accuracy", "completeness", "communication_quality", "context_awareness",
        "instruction_following")
AXIS_IDS = {name: i for i, name in enumerate(AXES)}


def axis_id(tags: Sequence[str], fields: Fields, field: str) -> int:
  axes = [t[len("axis:"):] for t in tags if t.startswith("axis:")]
  if len(axes) != 1:
    raise fields.error(field, f"expected exactly one 'axis:' tag, got {axes or 'none'}")
  if axes[0] not in AXIS_IDS:
    raise fields.error(field, f"unknown axis {axes[0]!r}: expected one of {list(AXES)}")
  return AXIS_IDS[axes[0]]


def parse_record(rec: dict, path: str, line: int) -> dict[str, Any]:
  """Validates one record; returns a `rubric_prompts` example (without prompt_id) plus the
  scorer's view ('points', 'item_tags', 'example_tags')."""
  fields = Fields(path, line)
  prompt = chat_turns(fields, rec)
  prompt_id = fields.get(rec, "prompt_id", str, "prompt_id")
  rubrics = fields.get(rec, "rubrics", list, "rubrics")
  example_tags = fields.str_list(rec, "example_tags", "example_tags", optional=True)
  criteria, points, item_tags = [], [], []
  for j, item in enumerate(rubrics):
    field = f"rubrics[{j}]"
    if not isinstance(item, dict):
      raise fields.error(field, f"expected an object, got {type(item).__name__}")
    text = fields.get(item, "criterion", str, f"{field}.criterion")
    pts = fields.number(item, "points", f"{field}.points")
    tags = fields.str_list(item, "tags", f"{field}.tags")
    axis = axis_id(tags, fields, f"{field}.tags")
    criteria.append(criterion(text, pts, axis, False, category_name=AXES[axis]))
    points.append(pts)
    item_tags.append(tags)
  check_weights(criteria, path, line, "rubrics")
  ideal = rec.get("ideal_completions_data")
  reference = ideal.get("ideal_completion") if isinstance(ideal, dict) else None
  return {"source": prompt_id, "prompt": render_chat(prompt),
          "messages": json.dumps(prompt, ensure_ascii=False),
          "reference": reference if isinstance(reference, str) else "", "criteria": criteria,
          "points": points, "item_tags": item_tags, "example_tags": example_tags}


_SCORER_KEYS = ("points", "item_tags", "example_tags")


def parse_healthbench_file(path: str) -> list[dict]:
  """All records of a HealthBench JSONL file as `rubric_prompts` examples (without prompt_id)."""
  out, ids = [], UniqueField(path, "prompt_id")
  for line, rec in read_jsonl(path):
    ex = parse_record(rec, path, line)
    ids.add(ex["source"], line)  # a repeated prompt would be trained as two prompts
    out.append({k: v for k, v in ex.items() if k not in _SCORER_KEYS})
  return out


class Healthbench(RubricPromptsBuilder):
  """HealthBench rubric prompts (main, hard or consensus), from local JSONL files."""

  BUILDER_CONFIGS = builder_configs(default="HealthBench (5000 examples).",
                                    hard="HealthBench Hard.", consensus="HealthBench Consensus.")
  parse_file = staticmethod(parse_healthbench_file)


# ----------------------------------------------------------------------------
# Official scoring of graded records.
# ----------------------------------------------------------------------------


def calculate_score(points: Sequence[float], met: Sequence[bool]) -> float | None:
  """sum(points of met items) / sum(positive points); None when no item has positive points."""
  possible = sum(p for p in points if p > 0)
  if possible == 0:
    return None
  return sum(p for p, m in zip(points, met, strict=True) if m) / possible


def _verdicts(records: Sequence[dict], verdicts) -> list[list]:
  if verdicts is not None:
    if len(verdicts) != len(records):
      raise ValueError(f"got {len(records)} records but {len(verdicts)} verdict lists")
    return [list(v) for v in verdicts]
  return [[item.get("criteria_met") for item in rec.get("rubrics", [])] for rec in records]


def example_metrics(record: dict, met: Sequence[bool], where: str = "record") -> dict[str, float]:
  """overall_score and tag scores of one graded example (simple-evals' grade_sample)."""
  ex = parse_record(record, where, 0)
  if len(met) != len(ex["points"]):
    raise ValueError(f"{where}: {len(ex['points'])} rubric items but {len(met)} verdicts")
  for j, m in enumerate(met):
    if not isinstance(m, (bool, np.bool_)):
      raise ValueError(f"{where}: field 'rubrics[{j}].criteria_met' must be a bool, got {m!r}")
  overall = calculate_score(ex["points"], met)
  metrics = {"overall_score": overall}
  metrics.update({tag: overall for tag in ex["example_tags"]})
  by_tag: dict[str, list[int]] = {}
  for j, tags in enumerate(ex["item_tags"]):
    for tag in set(tags):
      by_tag.setdefault(tag, []).append(j)
  for tag, idx in by_tag.items():
    score = calculate_score([ex["points"][j] for j in idx], [met[j] for j in idx])
    if score is not None:
      metrics[tag] = score
  return metrics


def score_records(records: Sequence[dict], verdicts: Sequence[Sequence[bool]] | None = None
                  ) -> dict[str, Any]:
  """Official HealthBench score of graded records.

  Args:
    records: HealthBench records (dicts as in the JSONL).
    verdicts: per record, per rubric item, criteria_met. When None, read from
      each item's `criteria_met` field (simple-evals' graded-record layout).

  Returns:
    {'overall_score': clipped mean, 'n_samples': int,
     'tags': {tag: clipped mean over examples with a score for it},
     'tag_counts': {tag: examples}, 'per_example': [overall_score, ...]}
  """
  verdicts = _verdicts(records, verdicts)
  values: dict[str, list[float]] = {}
  per_example = []
  for i, (rec, met) in enumerate(zip(records, verdicts)):
    metrics = example_metrics(rec, met, where=f"record {i}")
    per_example.append(metrics["overall_score"])
    for name, value in metrics.items():
      values.setdefault(name, []).append(value)
  if not per_example:
    raise ValueError("no records to score")
  clipped = {name: float(np.clip(np.mean(v), 0.0, 1.0)) for name, v in values.items()}
  overall = clipped.pop("overall_score")
  counts = {name: len(v) for name, v in values.items() if name != "overall_score"}
  return {"overall_score": overall, "n_samples": len(per_example), "tags": clipped,
          "tag_counts": counts, "per_example": per_example}


def to_arrays(records: Sequence[dict], verdicts: Sequence[Sequence[bool | None]] | None = None,
              max_criteria: int | None = None, prompt_ids: Sequence[int] | None = None,
              pitfall_mode: str = "signed"):
  """Graded records -> (scores [B, 1, K] float32, valid [B, 1, K] bool, RubricBatch).

  A missing verdict (None) is invalid, never a silent 0. The arrays let an
  array scorer be checked against `score_records`: per example,
  sum(w * s) / sum(w > 0) over valid items is the official overall score.
  """
  verdicts = _verdicts(records, verdicts)
  rubrics = []
  for i, rec in enumerate(records):
    ex = parse_record(rec, f"record {i}", 0)
    if len(verdicts[i]) != len(ex["criteria"]):
      raise ValueError(f"record {i}: {len(ex['criteria'])} rubric items but "
                       f"{len(verdicts[i])} verdicts")
    rubrics.append(ex["criteria"])
  rubric = RubricBatch.from_lists(rubrics, prompt_ids=prompt_ids, max_criteria=max_criteria,
                                  pitfall_mode=pitfall_mode)
  b, k = rubric.weights.shape
  scores = np.zeros((b, 1, k), np.float32)
  valid = np.zeros((b, 1, k), bool)
  for i, met in enumerate(verdicts):
    for j, m in enumerate(met):
      if m is not None:
        scores[i, 0, j] = float(bool(m))
        valid[i, 0, j] = True
  return scores, valid, rubric
