"""Per-prompt state tables: how many rows a state has, and the host-side id check."""
import jax.numpy as jnp
import numpy as np
import pytest

from focal.aggregators import EmptyState
from focal.aggregators.prompt_state import check_prompt_ids, gather_rows, scatter_rows, table_rows


def test_table_rows_reads_every_table_and_ignores_scalars():
  assert table_rows(EmptyState()) is None
  assert table_rows({"seen": np.zeros(5, bool)}) == 5          # a 1-D table counts
  assert table_rows({"step": np.int32(3), "sat": np.zeros((5, 2))}) == 5  # a scalar is no table
  with pytest.raises(ValueError, match=r"disagree on their number of rows: \[4, 5\]"):
    table_rows({"a": np.zeros(4), "b": np.zeros((5, 2))})


def test_check_prompt_ids_against_a_one_dimensional_table():
  state = {"seen": np.zeros(3, bool)}
  check_prompt_ids(state, [0, 2])
  with pytest.raises(ValueError, match="prompt id 3 is outside"):
    check_prompt_ids(state, [0, 3])
  with pytest.raises(ValueError, match="prompt id -1 is outside"):
    check_prompt_ids(state, [-1, 2])


def test_scatter_writes_only_the_batch_rows_and_the_last_duplicate_wins():
  table = jnp.zeros((4, 2))
  rows = jnp.float32([[1, 1], [2, 2], [3, 3], [4, 4]])
  out = scatter_rows(table, jnp.int32([3, 0, 1, 0]), rows)
  np.testing.assert_array_equal(out, [[4, 4], [3, 3], [0, 0], [1, 1]])
  np.testing.assert_array_equal(gather_rows(out, jnp.int32([3, 2])), [[1, 1], [0, 0]])
