"""The loop's grader stage: verdicts [B, G, K] for the rollouts of B prompts.

Two shapes, one interface (`score(split, rows, tokens, mask, group) -> scores, valid, stats`):

  InJitGrader   `grader.kind=programmatic`: the synthetic suite's jittable checks. The
                training step fuses it into one XLA program (`Engine.train_step`); evaluation
                calls it jitted.
  HostGrader    `grader.kind=judge` (an OpenAI-compatible LLM judge, focal.graders.judge) or
                `rules` (regex/keyword/length rules given per criterion in the data): rollouts
                are decoded to text on the host, graded, and the verdicts fed back to the
                jitted `learn_step`.

Which one a run uses is its `grader.kind`'s record (focal.graders.kinds).

Score convention everywhere: 1 when the criterion's original text holds for the response (for
a pitfall: the response falls into it); `valid=False` marks a verdict that does not exist.
"""
from __future__ import annotations

import json
import time

import jax
import numpy as np

from focal.graders.base import check_scores, grade_texts
from focal.graders.rules import rule_grader

class InJitGrader:
  """The programmatic grader of a source with `grade(features, tokens, mask)` (jittable)."""

  fused = True

  def __init__(self, source):
    self.source = source
    self.fn = source.grade
    self._jit = jax.jit(source.grade)

  def score(self, split: str, rows, tokens, mask, group: int, pitfall_mode: str | None = None):
    del pitfall_mode  # programmatic checks score the original sense
    features = np.repeat(self.source.features(split)[np.asarray(list(rows))], group, axis=0)
    scores = self._jit(features, tokens, mask)
    scores = scores.reshape(len(list(rows)), group, -1)
    return scores, np.ones(scores.shape, bool), {}


class RulesGrader:
  """Host-side rules, one per criterion (the `rule` field of rubric JSONL criteria); the same
  call signature as `focal.graders.judge.JudgeClient.grade`."""

  def __init__(self):
    self._cache: dict[str, object] = {}

  def _grader(self, rule: str):
    if rule not in self._cache:
      self._cache[rule] = rule_grader(json.loads(rule))
    return self._cache[rule]

  def grade(self, conversations, responses, criteria, mask, pitfall_mode: str = "flip"):
    del conversations, pitfall_mode  # rules read the response only, in the original sense
    start = time.monotonic()
    graders = [[self._grader(c["rule"]) for c in crits] for crits in criteria]
    scores, valid = grade_texts(graders, responses, max_criteria=np.asarray(mask).shape[1])
    valid &= np.asarray(mask)[:, None, :]
    real = np.broadcast_to(np.asarray(mask)[:, None, :], valid.shape)
    return scores, valid, {"seconds": time.monotonic() - start,
                           "invalid_frac": float(1 - valid.sum() / max(real.sum(), 1))}


def check_rules(source) -> None:
  """Every criterion of the data carries a rule (grader.kind=rules), or a clear error."""
  for split in ("train", "eval"):
    for row, crits in enumerate(source.judge_inputs(split, range(source.size(split)))[1]):
      for k, c in enumerate(crits):
        if not c.get("rule"):
          raise ValueError(f"grader.kind=rules: {split} prompt {row} criterion {k} "
                           f"({c['text'][:60]!r}) has no 'rule'; give every criterion a rule "
                           "in the data (rubric_jsonl's criteria[].rule) or use grader.kind=judge")
        rule_grader(json.loads(c["rule"]))


class HostGrader:
  """Decodes rollouts to text and grades them with `client.grade` (a judge or rules).

  Args:
    source: the data source (prompts, criteria and the response codec).
    client: an object with `grade(conversations, responses, criteria, mask, pitfall_mode)`.
    pitfall_mode: how pitfalls are asked ("flip": as avoidance, under the pow3r template).
  """

  fused = False

  def __init__(self, source, client, pitfall_mode: str = "flip"):
    self.source, self.client, self.pitfall_mode = source, client, pitfall_mode

  def score(self, split: str, rows, tokens, mask, group: int, pitfall_mode: str | None = None):
    """(scores [n, G, K] float32, valid [n, G, K] bool, stats dict) for `rows` of `split`."""
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    rows = list(np.asarray(rows))
    conversations, criteria, crit_mask = self.source.judge_inputs(split, rows)
    texts = [[self.source.decode_response(tokens[i * group + g], mask[i * group + g])
              for g in range(group)] for i in range(len(rows))]
    scores, valid, stats = self.client.grade(conversations, texts, criteria, crit_mask,
                                             pitfall_mode or self.pitfall_mode)
    stats = stats.as_dict() if hasattr(stats, "as_dict") else dict(stats)
    scores, valid = np.asarray(scores, np.float32), np.asarray(valid, bool)
    check_scores(scores, valid)  # a grader's bug stops here, not as a NaN in the policy
    return scores, valid, stats
