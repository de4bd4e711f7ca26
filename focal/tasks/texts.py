"""The synthetic tasks in words, for a host-side judge: prompt texts and criterion texts.

Every criterion has a stable text that names it as `<task>/<criterion>`:

  criterion_text("keywords", criterion)  ->  "keywords/has_first: the first keyword appears"

`find_criterion` reads the name back from any text that contains it (a judge prompt, a
criterion reworded as avoidance), which is how the rule judge server
(`focal.graders.rule_server`) grades a criterion with the task's own jittable check.
`judge_criteria(suite, prompts)` gives the per-prompt criterion lists the judge client
(`focal.graders.judge.JudgeClient.grade`) takes.
"""
from __future__ import annotations

import re

import numpy as np

from focal.tasks.base import Criterion, PromptSet, Task

_REFERENCE = re.compile(r"(?<![\w/])([a-z][a-z0-9_]*)/([a-z][a-z0-9_]*): ")


def criterion_text(task_name: str, criterion: Criterion) -> str:
  return f"{task_name}/{criterion.name}: {criterion.description or criterion.name}"


def find_criterion(text: str) -> tuple[str, str]:
  """(task name, criterion name) of the first `<task>/<criterion>: ` in `text`."""
  m = _REFERENCE.search(text)
  if m is None:
    raise ValueError(f"no '<task>/<criterion>: ' reference in {text[:80]!r}")
  return m.group(1), m.group(2)


def prompt_texts(prompts: PromptSet) -> list[str]:
  """[N] prompt texts (what `render` wrote)."""
  return [bytes(t).decode("ascii") for t in prompts.tokens]


def row_tasks(task_or_suite, features) -> list[Task]:
  """[N] the task of each row of `features` ([N, F] of a task or of a suite)."""
  features = np.asarray(features)
  if isinstance(task_or_suite, Task):
    return [task_or_suite] * features.shape[0]
  return [task_or_suite.tasks[int(i)] for i in features[:, 0]]


def judge_criteria(task_or_suite, prompts: PromptSet) -> list[list[dict]]:
  """[N] lists of the row task's criteria as the judge client takes them.

  Each entry is {text, weight (signed), category (the task's category name), required}; entry k
  is slot k (`prompts.mask` says which slots a prompt enables).
  """
  out = []
  for i, task in enumerate(row_tasks(task_or_suite, prompts.features)):
    out.append([{"text": criterion_text(task.name, c), "weight": float(c.weight),
                 "category": c.category, "required": bool(prompts.required[i, k])}
                for k, c in enumerate(task.criteria)])
  return out
