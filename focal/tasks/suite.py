"""A mixture of tasks behind the single-task interface.

Suite features are `[task_index, task features..., -1 padding]`, so
`Suite.grade(features, response, mask)` has the same signature as a task's and
stays jittable: every task grades every row and the row's own task is selected
(six small graders; cheaper than a per-row switch under vmap). Criterion slots
are padded to the largest K with `mask=False`, and each task's categories get
their own id range (`Suite.categories` names them `task/category`).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from focal.tasks.base import (EVAL_ID_OFFSET, WARM_START_QUALITY, PromptSet, Task,
                              pad_responses)


class Suite:
  """Tasks mixed into one batch with a common K and disjoint category ids."""

  def __init__(self, tasks: tuple):
    self.tasks = tuple(tasks)
    if not self.tasks:
      raise ValueError("a suite needs at least one task")
    self.name = "suite(" + ",".join(t.name for t in self.tasks) + ")"
    self.num_criteria = max(t.num_criteria for t in self.tasks)
    self.num_features = 1 + max(t.num_features for t in self.tasks)
    self.max_response_len = max(t.max_response_len for t in self.tasks)
    offsets = np.cumsum([0] + [len(t.categories) for t in self.tasks])
    self.category_offsets = tuple(int(o) for o in offsets[:-1])
    self.categories = tuple(f"{t.name}/{c}" for t in self.tasks for c in t.categories)

  def make_prompts(self, split: str, num_per_task: int, seed: int) -> PromptSet:
    """`num_per_task` prompts of each task, task by task; ids stay dense per split."""
    parts = [t.make_prompts(split, num_per_task, seed) for t in self.tasks]
    k, f = self.num_criteria, self.num_features
    n = num_per_task * len(parts)
    features = np.full((n, f), -1, np.int32)
    weights = np.zeros((n, k), np.float32)
    categories = np.zeros((n, k), np.int32)
    required = np.zeros((n, k), bool)
    mask = np.zeros((n, k), bool)
    tokens = []
    for t_index, (task, part) in enumerate(zip(self.tasks, parts)):
      rows = slice(t_index * num_per_task, (t_index + 1) * num_per_task)
      kt = task.num_criteria
      features[rows, 0] = t_index
      features[rows, 1:1 + task.num_features] = part.features
      weights[rows, :kt] = part.weights
      categories[rows, :kt] = part.categories + self.category_offsets[t_index]
      required[rows, :kt] = part.required
      mask[rows, :kt] = part.mask
      tokens += part.tokens
    base = EVAL_ID_OFFSET if split == "eval" else 0
    return PromptSet(prompt_ids=np.arange(base, base + n, dtype=np.int32), tokens=tokens,
                     features=features, weights=weights, categories=categories,
                     required=required, mask=mask)

  def grade(self, features, response, response_mask):
    """Scores [N, K] of responses [N, L] to suite prompts [N, F]; 0 on padded slots."""
    features = jnp.asarray(features, jnp.int32)
    out = jnp.zeros((features.shape[0], self.num_criteria), jnp.float32)
    for t_index, task in enumerate(self.tasks):
      own = task.grade(features[:, 1:1 + task.num_features], response, response_mask)
      own = jnp.pad(own, ((0, 0), (0, self.num_criteria - task.num_criteria)))
      out = jnp.where((features[:, 0] == t_index)[:, None], own, out)
    return out

  def reference_responses(self, features, rng, quality: float = WARM_START_QUALITY):
    """Each row's task's reference response, padded to the suite's L."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    features = np.asarray(features, np.int32)
    bodies = []
    for row in features:
      task: Task = self.tasks[int(row[0])]
      bodies.append(task.reference_one(row[1:1 + task.num_features], rng, float(quality)))
    return pad_responses(bodies, self.max_response_len)

  def task_index(self, features) -> np.ndarray:
    return np.asarray(features)[:, 0]

  def parse(self, text: str) -> np.ndarray:
    """Suite features [F] of a prompt text (the inverse of the row's task's `render`)."""
    errors = []
    for t_index, task in enumerate(self.tasks):
      try:
        own = task.parse(text)
      except ValueError as e:
        errors.append(str(e))
        continue
      row = np.full((self.num_features,), -1, np.int32)
      row[0], row[1:1 + task.num_features] = t_index, own
      return row
    raise ValueError(f"{text[:60]!r} is not a prompt of {self.name}: " + "; ".join(errors))
