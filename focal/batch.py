"""The data that flows through one GRPO iteration: a batch of prompts and the rollouts drawn
for them (shapes in the docstrings; B prompts, G rollouts per prompt, N = B * G rows)."""
from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax

from focal.rubric import RubricBatch


@flax.struct.dataclass
class PromptBatch:
  """B prompts with their rubrics.

  tokens: [B, P] int32, left-padded prompts. mask: [B, P] bool, real prompt tokens.
  features: [B, F] int32, whatever a programmatic grader reads about each prompt.
  rubric: RubricBatch with [B, K] fields.
  """
  tokens: Any
  mask: Any
  features: Any
  rubric: RubricBatch


class Rollouts(NamedTuple):
  """G responses per prompt, flattened to N = B * G rows (prompt-major).

  tokens: [N, L] generated tokens; mask: [N, L] real generated tokens (EOS included).
  """
  tokens: jax.Array
  mask: jax.Array
