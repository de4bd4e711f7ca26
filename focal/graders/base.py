"""Verdicts and the grader interface shared by program graders and LLM judges.

A verdict scores one (rollout, criterion) pair in [0, 1]: 1 means the
criterion's text holds for the response (for a pitfall, that the response
falls into it; rubric.apply_pitfalls flips those for training). `valid=False`
means no verdict exists; it must never be read as a 0.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Verdict:
  score: float
  valid: bool
  reason: str = ""


INVALID_NO_TEXT = Verdict(0.0, False, "no response text")


class Grader(Protocol):
  def grade(self, text: str | None) -> Verdict:
    """Verdict on one decoded response; None (nothing decoded) is an invalid verdict."""


def grade_texts(graders: Sequence[Sequence[Grader]], texts: Sequence[Sequence[str | None]],
                max_criteria: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Grades every rollout of every prompt against that prompt's criteria.

  Args:
    graders: [B] lists of a prompt's criterion graders (K_b <= K each).
    texts: [B] lists of G decoded rollouts (None where decoding failed).
    max_criteria: K; defaults to the longest rubric.

  Returns:
    scores [B, G, K] float32 (0 where invalid or padding), valid [B, G, K] bool.
  """
  if len(graders) != len(texts):
    raise ValueError(f"got graders for {len(graders)} prompts but texts for {len(texts)}")
  groups = {len(t) for t in texts}
  if len(groups) > 1:
    raise ValueError(f"every prompt needs the same number of rollouts, got sizes {sorted(groups)}")
  b, g = len(texts), (groups.pop() if groups else 0)
  k = max((len(r) for r in graders), default=0) if max_criteria is None else max_criteria
  scores = np.zeros((b, g, k), np.float32)
  valid = np.zeros((b, g, k), bool)
  for i, (rubric, rollouts) in enumerate(zip(graders, texts)):
    if len(rubric) > k:
      raise ValueError(f"prompt {i}: {len(rubric)} graders do not fit max_criteria={k}")
    for r, text in enumerate(rollouts):
      for j, grader in enumerate(rubric):
        v = safe_grade(grader, text)
        scores[i, r, j] = v.score if v.valid else 0.0
        valid[i, r, j] = v.valid
  return scores, valid


def check_scores(scores, valid, clip: bool = False, name: str = "scores") -> np.ndarray:
  """The host boundary of verdict arrays, before they enter a jitted step.

  Args:
    scores: [..., K] verdicts ([N, K] or [B, G, K]); valid: the same shape, bool.
    clip: clip valid scores into [0, 1] instead of refusing them (explicit opt-in:
      a score of 5 is usually a grader on another scale, which clipping hides).
    name: what the error calls the array.

  Returns:
    scores as float32, 0 wherever `valid` is False (whatever they held).

  Raises:
    ValueError naming the first offending index and value: a valid score that
    is not finite, or (unless `clip`) outside [0, 1]; mismatched shapes.
  """
  scores, valid = np.asarray(scores, np.float32), np.asarray(valid)
  if valid.dtype != bool or valid.shape != scores.shape:
    raise ValueError(f"valid must be a bool array shaped like {name} {scores.shape}, got "
                     f"{valid.dtype} {valid.shape}")
  scores = np.where(valid, scores, np.float32(0.0))
  bad = ~np.isfinite(scores) if clip else ~((scores >= 0.0) & (scores <= 1.0))
  if bad.any():
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    rule = "finite" if clip else "in [0, 1] (pass clip=True to clip)"
    raise ValueError(f"{name}{list(index)} = {float(scores[index]):.6g} on a valid verdict: scores must be "
                     f"{rule}; {int(bad.sum())} such verdict(s) in all")
  return np.clip(scores, 0.0, 1.0) if clip else scores


def safe_grade(grader: Grader, text: str | None) -> Verdict:
  """grader.grade, with a failure of the grader turned into an invalid verdict."""
  if text is None:
    return INVALID_NO_TEXT
  try:
    v = grader.grade(text)
  except Exception as e:  # a grader bug on one rollout must not sink the whole batch
    return Verdict(0.0, False, f"{type(e).__name__}: {e}")
  if v.valid and not 0.0 <= v.score <= 1.0:
    return Verdict(0.0, False, f"score {v.score} outside [0, 1]")
  return v
