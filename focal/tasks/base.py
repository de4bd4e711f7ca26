"""The synthetic rubric task interface: criteria, prompt sets, grading, reference responses.

Token contract (project-wide): byte-level vocabulary, ids 0-255 are bytes,
PAD=256, BOS=257, EOS=258, UNK=259, vocab_size=260. A response is `[N, L]`
int32 tokens with a bool mask `[N, L]` (True on generated tokens; EOS is the
last real token when emitted). Prompt tokens are the prompt text as bytes
(no BOS; the model code adds its own framing).

A task is declared as a table of `(Criterion, check)` pairs, where
`check(features [F], response [L], mask [L]) -> bool or float []` grades one
response; `Task.grade` vmaps the table over rows, so it is jittable and has no
Python loop over N or L.
"""
from __future__ import annotations

import abc
import dataclasses
import re
import zlib
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from focal.rubric import RubricBatch

PAD, BOS, EOS, UNK = 256, 257, 258, 259
VOCAB_SIZE = 260
MAX_RESPONSE_LEN = 40
SPLITS = ("train", "eval")
# Eval prompt ids start here so they never collide with train ids, which are
# dense in [0, N) to index per-prompt aggregator state directly.
EVAL_ID_OFFSET = 1 << 20
# One prompt in EVAL_EVERY (by a content hash) belongs to the eval split, so a
# prompt's split depends on its text only, never on the seed or on N.
EVAL_EVERY = 4
# The warm-start quality the diagnostics and the supervised warm start use.
WARM_START_QUALITY = 0.5
# The reference emits EOS with probability STOP_BASE + 0.1 * quality (0.9 at
# warm start), so `stops` is saturated in only ~0.9**16 = 19% of groups.
STOP_BASE = 0.85


class Criterion(NamedTuple):
  """One rubric slot: `weight` is signed (negative = pitfall); `description` says, in words,
  what the check tests (a judge reads it; see `focal.tasks.texts`)."""
  name: str
  category: str
  weight: float
  required: bool
  description: str = ""


@dataclasses.dataclass(frozen=True)
class PromptSet:
  """N prompts of a task (or of a suite) with their rubrics.

  Attributes:
    prompt_ids: [N] int32, stable ids; train in [0, N), eval from EVAL_ID_OFFSET.
    tokens: N lists of ints, the prompt text as bytes.
    features: [N, F] int32, the prompt parameters the graders read.
    weights: [N, K] float32 signed human weights (0 on disabled slots).
    categories: [N, K] int32 category ids (indices into the task's categories).
    required: [N, K] bool.
    mask: [N, K] bool, False on slots this prompt disables.
  """
  prompt_ids: np.ndarray
  tokens: list
  features: np.ndarray
  weights: np.ndarray
  categories: np.ndarray
  required: np.ndarray
  mask: np.ndarray

  def __len__(self) -> int:
    return int(self.prompt_ids.shape[0])

  def rubric(self, pitfall_mode: str = "flip") -> RubricBatch:
    return RubricBatch.from_arrays(self.weights, self.categories, self.required, self.mask,
                                   self.prompt_ids, pitfall_mode=pitfall_mode)


Check = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


class Task(abc.ABC):
  """A synthetic rubric task. Subclasses set the class attributes and the three hooks.

  Class attributes:
    name: registry name.
    categories: category names; `Criterion.category` must be one of them.
    rubric: tuple of (Criterion, check) pairs, one per slot.
    num_features: F, the width of `features`.
    max_response_len: L of reference responses.

  Hooks (host-side numpy; only `grade` must be jittable):
    sample_features(rng, n) -> [n, F] int candidate prompts (duplicates allowed).
    render(features [F]) -> str, the prompt text.
    parse(text) -> [F] int32, the inverse of `render` (ValueError on another task's text).
    reference_one(features [F], rng, quality) -> list[int], one response
      (bytes, EOS appended when the reference stops).
    slot_mask(features [N, F]) -> [N, K] bool, slots each prompt enables.
  """
  name: str = ""
  categories: tuple = ()
  rubric: tuple = ()
  num_features: int = 0
  max_response_len: int = MAX_RESPONSE_LEN

  def __init__(self):
    for criterion, _ in self.rubric:
      if criterion.category not in self.categories:
        raise ValueError(f"task {self.name}: criterion {criterion.name} has unknown category "
                         f"{criterion.category!r}; categories: {self.categories}")

  @property
  def criteria(self) -> tuple:
    return tuple(c for c, _ in self.rubric)

  @property
  def checks(self) -> tuple:
    return tuple(f for _, f in self.rubric)

  @property
  def num_criteria(self) -> int:
    return len(self.rubric)

  def criterion_index(self, name: str) -> int:
    names = [c.name for c in self.criteria]
    if name not in names:
      raise ValueError(f"task {self.name} has no criterion {name!r}; criteria: {names}")
    return names.index(name)

  # -- hooks --------------------------------------------------------------

  @abc.abstractmethod
  def sample_features(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """See the class docstring."""

  @abc.abstractmethod
  def render(self, features: np.ndarray) -> str:
    """See the class docstring."""

  @abc.abstractmethod
  def parse(self, text: str) -> np.ndarray:
    """See the class docstring."""

  @abc.abstractmethod
  def reference_one(self, features: np.ndarray, rng: np.random.Generator,
                    quality: float) -> list:
    """See the class docstring."""

  def slot_mask(self, features: np.ndarray) -> np.ndarray:
    return np.ones((features.shape[0], self.num_criteria), bool)

  # -- interface ----------------------------------------------------------

  def make_prompts(self, split: str, num: int, seed: int) -> PromptSet:
    """`num` distinct prompts of `split`, deterministic from `seed`."""
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([seed, _crc(self.name), SPLITS.index(split)])
    rows, seen = [], set()
    for _ in range(200):
      for row in np.asarray(self.sample_features(rng, max(64, 2 * num)), np.int32):
        key = row.tobytes()
        if key in seen or self._split_of(key) != split:
          continue
        seen.add(key)
        rows.append(row)
        if len(rows) == num:
          return self._prompt_set(split, np.stack(rows))
    raise ValueError(f"task {self.name}: could not draw {num} distinct {split} prompts "
                     f"(got {len(rows)}); the prompt space is too small")

  def grade(self, features, response, response_mask):
    """Scores [N, K] float32 in [0, 1] of responses [N, L] (mask [N, L]) to prompts [N, F]."""
    checks = self.checks

    def one(f, r, m):
      return jnp.stack([jnp.asarray(c(f, r, m), jnp.float32) for c in checks])

    scores = jax.vmap(one)(jnp.asarray(features, jnp.int32), jnp.asarray(response, jnp.int32),
                           jnp.asarray(response_mask, bool))
    return jnp.clip(scores, 0.0, 1.0)

  def reference_responses(self, features, rng, quality: float = WARM_START_QUALITY):
    """Synthetic sample responses, one per row of `features` [N, F].

    `rng` is a numpy Generator or an int seed. `quality` in [0, 1] raises the
    odds of each optional good behaviour; the reference's fixed skill gaps (tied
    to prompt difficulty) do not move with it, which is what leaves some
    criteria dead and others saturated at the start of RL.

    Returns:
      tokens [N, L] int32 (PAD after the end), mask [N, L] bool.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    features = np.asarray(features, np.int32)
    bodies = [self.reference_one(f, rng, float(quality)) for f in features]
    return pad_responses(bodies, self.max_response_len)

  # -- helpers ------------------------------------------------------------

  def _split_of(self, key: bytes) -> str:
    return "eval" if _crc(self.name.encode() + key) % EVAL_EVERY == 0 else "train"

  def _prompt_set(self, split: str, features: np.ndarray) -> PromptSet:
    n, k = features.shape[0], self.num_criteria
    base = EVAL_ID_OFFSET if split == "eval" else 0
    crit = self.criteria
    weights = np.tile(np.asarray([c.weight for c in crit], np.float32), (n, 1))
    cats = np.tile(np.asarray([self.categories.index(c.category) for c in crit], np.int32), (n, 1))
    req = np.tile(np.asarray([c.required for c in crit], bool), (n, 1))
    mask = np.asarray(self.slot_mask(features), bool).reshape(n, k)
    return PromptSet(
        prompt_ids=np.arange(base, base + n, dtype=np.int32),
        tokens=[list(self.render(f).encode("ascii")) for f in features],
        features=features.astype(np.int32),
        weights=np.where(mask, weights, 0.0).astype(np.float32),
        categories=cats, required=req & mask, mask=mask)


def match_prompt(task: str, pattern: str, text: str) -> re.Match:
  """The full match of a task's prompt grammar, or a ValueError naming the task."""
  m = re.fullmatch(pattern, text)
  if m is None:
    raise ValueError(f"{text[:60]!r} is not a {task} prompt (expected /{pattern}/)")
  return m


def letters_feature(n: int, letters: str, width: int) -> np.ndarray:
  """[1 + width] int32: the count, the letters' codes, -1 padding (caps and sort features)."""
  out = np.full((1 + width,), -1, np.int32)
  out[0] = n
  out[1:1 + len(letters)] = list(letters.encode("ascii"))
  return out


def _crc(data) -> int:
  return zlib.crc32(data.encode() if isinstance(data, str) else data)


def encode(text: str, eos: bool = True) -> list:
  """Response tokens of an ASCII string (EOS appended when `eos`)."""
  return list(text.encode("ascii")) + ([EOS] if eos else [])


def pad_responses(bodies: Sequence[Sequence[int]], length: int):
  """Pads token lists to [N, length] int32 with PAD; mask [N, length] True on real tokens."""
  tokens = np.full((len(bodies), length), PAD, np.int32)
  mask = np.zeros((len(bodies), length), bool)
  for i, body in enumerate(bodies):
    body = list(body)[:length]
    tokens[i, :len(body)] = body
    mask[i, :len(body)] = True
  return tokens, mask
