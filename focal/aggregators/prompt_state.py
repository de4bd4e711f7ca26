"""Per-prompt state tables: rows keyed by a stable prompt id, read and written per batch.

Adaptive aggregators keep a table `[num_prompts, ...]` that persists across
epochs. A batch reads the rows of its prompts and writes back only those rows,
so prompts outside the batch never change.

`prompt_ids` must lie in [0, num_prompts): indexing inside jit would clamp an
id past the table to its last row and drop its write, silently. So the table
size is checked on the host: `check_prompt_ids(state, ids)` once, when a run is
built (every id its batches can carry), and `gather_rows` on every eager call.
When a prompt appears more than once
in one batch, every occurrence reads the same (pre-batch) row and the last
occurrence's row is written back: JAX leaves the winner of duplicate scatter
indices unspecified, so the earlier ones are dropped explicitly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def table_rows(state) -> int | None:
  """Rows P of the per-prompt tables of an (unstacked) aggregator state; None if it has none."""
  rows = {int(np.shape(x)[0]) for x in jax.tree.leaves(state) if np.ndim(x) >= 1}
  if len(rows) > 1:
    raise ValueError(f"aggregator state tables disagree on their number of rows: {sorted(rows)}")
  return rows.pop() if rows else None


def check_prompt_ids(state, prompt_ids) -> None:
  """Host side: raises ValueError unless every id indexes a row of `state`'s tables."""
  rows = table_rows(state)
  if rows is not None:
    _check_rows(rows, np.asarray(prompt_ids))


def _check_rows(rows: int, ids: np.ndarray) -> None:
  if ids.size and (ids.min() < 0 or ids.max() >= rows):
    bad = int(ids.max()) if ids.max() >= rows else int(ids.min())
    raise ValueError(f"prompt id {bad} is outside the aggregator state's per-prompt table of "
                     f"{rows} rows (valid ids [0, {rows - 1}]); init the aggregator with "
                     f"num_prompts >= {int(ids.max()) + 1}")


def gather_rows(table, prompt_ids):
  """table [P, ...], prompt_ids [B] -> [B, ...]; ids are checked when they are concrete."""
  if not isinstance(prompt_ids, jax.core.Tracer):
    _check_rows(table.shape[0], np.asarray(prompt_ids))
  return table[prompt_ids]


def scatter_rows(table, prompt_ids, rows):
  """table [P, ...] with `rows [B, ...]` written at `prompt_ids [B]` (last duplicate wins)."""
  same = prompt_ids[:, None] == prompt_ids[None, :]
  repeated_later = jnp.any(jnp.triu(same, k=1), axis=1)
  # An out-of-range index with mode="drop" is a no-op write.
  index = jnp.where(repeated_later, table.shape[0], prompt_ids)
  return table.at[index].set(rows.astype(table.dtype), mode="drop")
