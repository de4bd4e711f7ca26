"""Micro-batch layout: every rollout in exactly one chunk, with its own prompt, strided over
the batch so that contiguous device blocks share every chunk."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from focal import microbatch


@st.composite
def shapes(draw):
  b = draw(st.integers(1, 12))
  g = draw(st.integers(1, 8))
  n = b * g
  size = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
  return b, g, size, draw(st.sampled_from([1, 2, 4, 8]))


@settings(max_examples=60, deadline=None)
@given(shapes())
def test_chunks_partition_the_rollouts_and_keep_each_with_its_prompt(shape):
  b, g, size, shards = shape
  lay = microbatch.layout(b, g, size, shards=shards)
  assert lay.size == size and lay.chunks * size == b * g and g % lay.rows == 0
  rows = np.arange(b * g)
  chunks = np.asarray(microbatch.split_rows(rows, lay))
  assert chunks.shape == (lay.chunks, size)
  assert sorted(chunks.ravel()) == list(rows)
  np.testing.assert_array_equal(microbatch.merge_rows(chunks, lay), rows)
  prompts = np.asarray(microbatch.split_prompts(np.arange(b), lay))
  assert prompts.shape == (lay.chunks, lay.prompts)
  # Within a chunk, rows are prompt-major: h rollouts of each of its p prompts, in order.
  np.testing.assert_array_equal(chunks // g, np.repeat(prompts, lay.rows, axis=1))
  if b % shards == 0 and lay.prompts % shards == 0:  # each device's block in every chunk
    np.testing.assert_array_equal((prompts // (b // shards)) % shards,
                                  np.tile(np.arange(shards).repeat(lay.prompts // shards),
                                          (lay.chunks, 1)))
  # Trailing dimensions travel along.
  wide = np.arange(b * g * 3).reshape(b * g, 3)
  np.testing.assert_array_equal(microbatch.merge_rows(microbatch.split_rows(wide, lay), lay), wide)


def test_chunks_take_prompts_strided_so_every_device_block_is_in_every_chunk():
  # 8 prompts on 4 devices (2 each, contiguous), G = 4, chunks of 8 rollouts = 4 prompts x 2.
  assert microbatch.layout(8, 4, 8).prompts == 2  # one device: the most rollouts per prompt
  lay = microbatch.layout(8, 4, 8, shards=4)
  assert (lay.prompts, lay.rows, lay.chunks) == (4, 2, 4)
  prompts = np.asarray(microbatch.split_prompts(np.arange(8), lay))
  for chunk in prompts:
    np.testing.assert_array_equal(np.sort(chunk // 2), np.arange(4))  # one from each device


def test_a_size_that_does_not_divide_the_batch_is_an_error_naming_it():
  with pytest.raises(ValueError, match="grpo.rollout_micro_batch_size 5 does not divide the 12"):
    microbatch.layout(3, 4, 5, "grpo.rollout_micro_batch_size")
