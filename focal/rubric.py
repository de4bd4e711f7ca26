"""Rubric batches: per-prompt criteria, padded to K slots, as a jittable pytree.

Shapes: B prompts, K criterion slots per prompt (padding marked by `mask`).
A criterion has a signed human weight (negative = pitfall), an integer category
and a required flag. Verdicts `scores [B, G, K]` in [0, 1] live outside the
rubric; `valid [B, G, K]` marks verdicts that exist (a judge can fail).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import flax.struct
import jax.numpy as jnp
import numpy as np

PITFALL_MODES = ("flip", "signed")

# Category and prompt ids are stored as int32: the valid range of both.
MAX_ID = int(np.iinfo(np.int32).max)

# A verdict counts as a pass at or above this level (graded verdicts in [0, 1]).
PASS_THRESHOLD = 0.5


@flax.struct.dataclass
class RubricBatch:
  """Criteria of B prompts padded to K slots.

  Attributes:
    weights: [B, K] float32, signed human weights (negative = pitfall); 0 on padding.
    categories: [B, K] int32, category id of each criterion; 0 on padding.
    required: [B, K] bool, criteria a strict completion must pass.
    mask: [B, K] bool, True on real criteria.
    prompt_ids: [B] int32, stable id of each prompt across epochs (indexes
      per-prompt aggregator state).
  """
  weights: Any
  categories: Any
  required: Any
  mask: Any
  prompt_ids: Any

  @property
  def num_prompts(self) -> int:
    return self.weights.shape[0]

  @property
  def max_criteria(self) -> int:
    return self.weights.shape[-1]

  @classmethod
  def from_arrays(cls, weights, categories, required, mask, prompt_ids,
                  pitfall_mode: str = "flip", allow_duplicate_ids: bool = False) -> "RubricBatch":
    """Validates host arrays and returns a batch of jnp arrays.

    Weights must be numbers, `required` and `mask` bools, categories and prompt
    ids integers in [0, MAX_ID]; prompt ids must be distinct unless
    `allow_duplicate_ids` (a prompt visited twice in one batch: per-prompt
    aggregator state then keeps the last occurrence's update).
    """
    weights = _typed(weights, "weights", "iuf").astype(np.float32)
    required = _typed(required, "required", "b")
    mask = _typed(mask, "mask", "b")
    categories = np.asarray(categories)
    prompt_ids = np.asarray(prompt_ids)
    if weights.ndim != 2:
      raise ValueError(f"weights must be [B, K], got shape {weights.shape}")
    for name, arr in (("categories", categories), ("required", required), ("mask", mask)):
      if arr.shape != weights.shape:
        raise ValueError(f"{name} has shape {arr.shape}, weights have {weights.shape}: "
                         "every rubric field must be [B, K]")
    if prompt_ids.shape != weights.shape[:1]:
      raise ValueError(f"prompt_ids has shape {prompt_ids.shape}, expected [B] = "
                       f"({weights.shape[0]},)")
    if not np.issubdtype(categories.dtype, np.integer):
      raise ValueError(f"categories must be integers, got dtype {categories.dtype}")
    if not np.issubdtype(prompt_ids.dtype, np.integer):
      raise ValueError(f"prompt_ids must be integers, got dtype {prompt_ids.dtype}")
    _check_ids(prompt_ids, "prompt_ids")
    _check_ids(categories[mask], "categories")
    if not allow_duplicate_ids:
      ids, counts = np.unique(prompt_ids, return_counts=True)
      if np.any(counts > 1):
        raise ValueError(f"prompt_ids must be distinct within a batch, got duplicates "
                         f"{ids[counts > 1].tolist()} (pass allow_duplicate_ids=True to visit a "
                         f"prompt twice in one batch)")
    check_pitfall_mode(pitfall_mode)
    for b in range(weights.shape[0]):
      _validate_prompt(b, int(prompt_ids[b]), weights[b], mask[b], pitfall_mode)
    weights = np.where(mask, weights, 0.0)
    return cls(
        weights=jnp.asarray(weights, jnp.float32),
        categories=jnp.asarray(np.where(mask, categories, 0), jnp.int32),
        required=jnp.asarray(required & mask),
        mask=jnp.asarray(mask),
        prompt_ids=jnp.asarray(prompt_ids, jnp.int32),
    )

  @classmethod
  def from_lists(cls, rubrics: Sequence[Sequence[Mapping[str, Any]]],
                 prompt_ids: Sequence[int] | None = None,
                 max_criteria: int | None = None,
                 pitfall_mode: str = "flip", allow_duplicate_ids: bool = False) -> "RubricBatch":
    """Pads lists of criteria dicts to K slots.

    Each criterion is a mapping with `weight` (an int or float, not a bool or a
    string; required), `category` (int in [0, MAX_ID], default 0) and `required`
    (a bool, default False). Prompt ids must be distinct unless
    `allow_duplicate_ids` (see `from_arrays`).

    Raises:
      ValueError naming the prompt and field on bad input.
    """
    rubrics = list(rubrics)
    if prompt_ids is None:
      prompt_ids = list(range(len(rubrics)))
    prompt_ids = list(prompt_ids)
    if len(prompt_ids) != len(rubrics):
      raise ValueError(f"got {len(rubrics)} rubrics but {len(prompt_ids)} prompt_ids")
    longest = max((len(r) for r in rubrics), default=0)
    k = longest if max_criteria is None else max_criteria
    if k < 1:
      raise ValueError("no rubric has any criterion: max_criteria must be >= 1")
    b = len(rubrics)
    weights = np.zeros((b, k), np.float32)
    categories = np.zeros((b, k), np.int64)
    required = np.zeros((b, k), bool)
    mask = np.zeros((b, k), bool)
    for i, (pid, rubric) in enumerate(zip(prompt_ids, rubrics)):
      if len(rubric) > k:
        raise ValueError(f"prompt {pid}: {len(rubric)} criteria do not fit max_criteria={k}")
      for j, criterion in enumerate(rubric):
        if "weight" not in criterion:
          raise ValueError(f"prompt {pid}, criterion {j}: missing field 'weight'")
        weights[i, j] = _as_float(criterion["weight"], pid, j, "weight")
        categories[i, j] = _as_int(criterion.get("category", 0), pid, j, "category")
        required[i, j] = _as_bool(criterion.get("required", False), pid, j, "required")
        mask[i, j] = True
    ids = [_as_int(p, p, None, "prompt_ids") for p in prompt_ids]
    return cls.from_arrays(weights, categories, required, mask, np.asarray(ids, np.int64),
                           pitfall_mode=pitfall_mode, allow_duplicate_ids=allow_duplicate_ids)


def _where(pid, j) -> str:
  return f"prompt {pid}" + ("" if j is None else f", criterion {j}")


def _as_float(value, pid, j, field) -> float:
  # bool is an int subclass and float("5") parses: both are slips, never weights.
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
    raise ValueError(f"{_where(pid, j)}: field '{field}' must be a number, got {value!r}")
  return float(value)


def _as_int(value, pid, j, field) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{_where(pid, j)}: field '{field}' must be an int, got {value!r}")
  if not 0 <= int(value) <= MAX_ID:
    raise ValueError(f"{_where(pid, j)}: field '{field}' is {int(value)}, outside the valid "
                     f"range [0, {MAX_ID}] (stored as int32)")
  return int(value)


def _as_bool(value, pid, j, field) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{_where(pid, j)}: field '{field}' must be a bool, got {value!r}")
  return bool(value)


def _typed(values, name: str, kinds: str) -> np.ndarray:
  """`values` as an array whose dtype kind is one of `kinds` (numpy's codes)."""
  arr = np.asarray(values)
  if arr.dtype.kind not in kinds:
    wanted = {"iuf": "numbers (not bools or strings)", "b": "bools"}[kinds]
    raise ValueError(f"{name} must be {wanted}, got dtype {arr.dtype}")
  return arr


def _check_ids(ids: np.ndarray, name: str) -> None:
  """Integer ids must fit int32 and be >= 0 (a larger id would wrap to a negative one)."""
  if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
    bad = ids[(ids < 0) | (ids > MAX_ID)]
    raise ValueError(f"{name} must lie in [0, {MAX_ID}] (stored as int32), got "
                     f"{bad[:5].tolist()}")


def check_pitfall_mode(pitfall_mode: str) -> None:
  if pitfall_mode not in PITFALL_MODES:
    raise ValueError(f"pitfall_mode must be one of {PITFALL_MODES}, got {pitfall_mode!r}")


def _validate_prompt(index, pid, weights, mask, pitfall_mode) -> None:
  where = f"prompt {pid} (row {index})"
  if not mask.any():
    raise ValueError(f"{where}: no real criteria (field 'mask' is all False)")
  real_w = weights[mask]
  bad = ~np.isfinite(real_w)
  if bad.any():
    raise ValueError(f"{where}: field 'weights' has non-finite values {real_w[bad].tolist()}")
  positive = np.abs(real_w) if pitfall_mode == "flip" else real_w
  if not np.any(positive > 0):
    raise ValueError(f"{where}: field 'weights' has no positive weight after pitfall handling "
                     f"(pitfall_mode={pitfall_mode!r}, weights={real_w.tolist()})")


# ----------------------------------------------------------------------------
# Jittable helpers shared by aggregators, estimators and metrics.
# ----------------------------------------------------------------------------


def apply_pitfalls(scores, rubric: RubricBatch, pitfall_mode: str = "flip"):
  """Returns (weights' [B, K], scores' [B, G, K]) for the training objective.

  `flip` (POW3R App. A.4): a pitfall (w < 0) becomes s' = 1 - s with w' = |w|,
  so every weight is non-negative and avoiding the pitfall earns reward.
  `signed` (HealthBench convention): weights and scores as given.
  """
  check_pitfall_mode(pitfall_mode)
  w = jnp.where(rubric.mask, rubric.weights, 0.0)
  if pitfall_mode == "signed":
    return w, scores
  pitfall = (w < 0)[:, None, :]
  return jnp.abs(w), jnp.where(pitfall, 1.0 - scores, scores)


def passes(scores, rubric: RubricBatch):
  """[B, G, K] bool: the response satisfies the criterion (avoids a pitfall)."""
  hit = scores >= PASS_THRESHOLD
  return jnp.where((rubric.weights < 0)[:, None, :], ~hit, hit)


def strict_targets(rubric: RubricBatch):
  """[B, K] bool: criteria that a strict completion must pass.

  The required criteria; a prompt that flags none requires all of its criteria
  (otherwise its strict completion would be vacuously 1).
  """
  req = rubric.required & rubric.mask
  has_required = jnp.any(req, axis=-1, keepdims=True)
  return jnp.where(has_required, req, rubric.mask)


def same_category(rubric: RubricBatch):
  """[B, K, K] float32: 1 where two real criteria share a category.

  Category sums become one batched matmul against this matrix, which keeps
  every aggregator free of Python loops and of a static category count.
  """
  same = rubric.categories[:, :, None] == rubric.categories[:, None, :]
  real = rubric.mask[:, :, None] & rubric.mask[:, None, :]
  return (same & real).astype(jnp.float32)


def safe_div(num, den):
  """num / den, with 0 where den == 0 (and no NaN in gradients)."""
  ok = den != 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def min_valid_count(group_size: int, min_valid_frac: float) -> int:
  """Verdicts a criterion needs in a group to count (POW3R: ceil(0.75 G))."""
  return int(math.ceil(min_valid_frac * group_size - 1e-9))
