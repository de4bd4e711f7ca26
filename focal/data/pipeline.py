"""Host batches of rubric prompts: grain over a `rubric_prompts` data source.

source (TFDS `as_data_source`, or any sequence of examples)
  -> shard -> shuffle(seed) -> repeat(epochs, reshuffled) -> batch(B) -> collate
The iterator's `get_state()` is a small JSON-able dict; `set_state` on a fresh
iterator over the same pipeline resumes with exactly the same next batches.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Mapping, Sequence

import grain
import numpy as np

from focal.data.rubric_prompts import user_turn
from focal.rubric import RubricBatch
from focal.tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class HostBatch:
  """B prompts ready for rollouts and grading.

  tokens: [B, L] int32, BOS then the prompt, padded with pad_id on `padding_side`.
  token_mask: [B, L] bool, True on real tokens.
  truncated: [B] bool, prompts cut to L tokens (their beginning was dropped).
  rubric: RubricBatch with K = max_criteria slots.
  prompt_ids: [B] int32, the same ids as rubric.prompt_ids.
  prompts, references: [B] texts; criteria: [B] lists of criterion texts (real ones only),
  for judges and graders.
  """
  tokens: np.ndarray
  token_mask: np.ndarray
  truncated: np.ndarray
  rubric: RubricBatch
  prompt_ids: np.ndarray
  prompts: list[str]
  references: list[str]
  criteria: list[list[str]]


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


_OPTIONAL = ("title", "category_name", "rule")


def normalize_example(record: Mapping[str, Any]) -> dict[str, Any]:
  """A TFDS-decoded example (bytes, criteria as a dict of lists) or a plain dict (criteria
  as a list of dicts) -> plain Python types with criteria as a list of dicts. Fields an
  older or hand-written record lacks get their defaults (messages: one user turn)."""
  criteria = record["criteria"]
  if isinstance(criteria, Mapping):
    n = len(criteria["weight"])
    criteria = [{k: criteria[k][j] for k in criteria} for j in range(n)]
  prompt = _text(record["prompt"])
  messages = _text(record.get("messages", "")) or user_turn(prompt)
  return {
      "prompt_id": int(record["prompt_id"]),
      "prompt": prompt,
      "messages": json.loads(messages),
      "reference": _text(record.get("reference", "")),
      "criteria": [{"text": _text(c["text"]), "weight": float(c["weight"]),
                    "category": int(c["category"]), "required": bool(c["required"]),
                    **{k: _text(c.get(k, "")) for k in _OPTIONAL}}
                   for c in criteria],
  }


def tokenize_prompts(prompts: Sequence[str], tokenizer: Tokenizer, max_len: int,
                     padding_side: str = "left"):
  """-> tokens [B, L] int32, mask [B, L] bool, truncated [B] bool.

  Left padding (the default) ends every prompt in the last column, so sampling
  appends to all rows at the same position. Too-long prompts keep BOS and their
  end, where the question usually is.
  """
  if padding_side not in ("left", "right"):
    raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
  if max_len < 2:
    raise ValueError(f"max_prompt_len must be >= 2 (BOS + one token), got {max_len}")
  b = len(prompts)
  tokens = np.full((b, max_len), tokenizer.pad_id, np.int32)
  mask = np.zeros((b, max_len), bool)
  truncated = np.zeros((b,), bool)
  for i, prompt in enumerate(prompts):
    ids = tokenizer.encode(prompt)
    if len(ids) + 1 > max_len:
      ids = ids[len(ids) - (max_len - 1):]
      truncated[i] = True
    ids = [tokenizer.bos_id] + ids
    n = len(ids)
    cols = slice(max_len - n, max_len) if padding_side == "left" else slice(0, n)
    tokens[i, cols] = ids
    mask[i, cols] = True
  return tokens, mask, truncated


def collate(records: Sequence[Mapping[str, Any]], *, tokenizer: Tokenizer, max_prompt_len: int,
            max_criteria: int, pitfall_mode: str = "flip",
            padding_side: str = "left") -> HostBatch:
  examples = [normalize_example(r) for r in records]
  prompt_ids = [ex["prompt_id"] for ex in examples]
  tokens, mask, truncated = tokenize_prompts([ex["prompt"] for ex in examples], tokenizer,
                                             max_prompt_len, padding_side)
  rubric = RubricBatch.from_lists([ex["criteria"] for ex in examples], prompt_ids=prompt_ids,
                                  max_criteria=max_criteria, pitfall_mode=pitfall_mode)
  return HostBatch(tokens=tokens, token_mask=mask, truncated=truncated, rubric=rubric,
                   prompt_ids=np.asarray(prompt_ids, np.int32),
                   prompts=[ex["prompt"] for ex in examples],
                   references=[ex["reference"] for ex in examples],
                   criteria=[[c["text"] for c in ex["criteria"]] for ex in examples])


def make_dataset(source: Sequence[Any], *, batch_size: int, tokenizer: Tokenizer,
                 max_prompt_len: int, max_criteria: int, seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, drop_remainder: bool = True,
                 pitfall_mode: str = "flip", padding_side: str = "left",
                 shard_index: int = 0, shard_count: int = 1,
                 read_threads: int = 1, prefetch: int = 16) -> grain.IterDataset:
  """grain pipeline of HostBatch. num_epochs=None repeats forever (reshuffled each epoch).

  shard_index/shard_count split the prompts between hosts (each gets every
  shard_count-th record) before shuffling, so hosts never share a prompt.
  read_threads/prefetch: records are small and local, so grain's defaults (16
  threads, 500 records ahead) only cost start-up time.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
  ds = grain.MapDataset.source(source)
  if shard_count > 1:
    ds = ds[shard_index::shard_count]
  if len(ds) < batch_size and drop_remainder:
    raise ValueError(f"{len(ds)} records cannot fill one batch of {batch_size}")
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                            prefetch_buffer_size=prefetch))
  ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=list)
  return ds.map(functools.partial(collate, tokenizer=tokenizer, max_prompt_len=max_prompt_len,
                                  max_criteria=max_criteria, pitfall_mode=pitfall_mode,
                                  padding_side=padding_side))
