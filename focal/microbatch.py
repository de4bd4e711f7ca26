"""Micro-batches of one GRPO batch: the chunks of rollouts that one forward/backward pass, or one
sampler call, holds at a time (`grpo.micro_batch_size`, `grpo.rollout_micro_batch_size`).

B prompts, G rollouts each, N = B * G rows, prompt-major. A chunk of m rollouts holds h
rollouts of each of p = m / h prompts (h divides G, p divides B), so a prompt's pass serves h of
its rollouts at once. There are C = N / m chunks, numbered c = a * (G / h) + s: chunk c takes
rollouts [s h, (s + 1) h) of the prompts a, a + B/p, a + 2 B/p, ... Strided, not contiguous:
the batch's rows are split over the `shards` devices of ('data', 'fsdp') in contiguous blocks,
so when `shards` divides p every chunk takes the same rows from every device and each device
works on its own share of every chunk, with no data moved between devices. `layout` picks the
largest h (the most rollouts per prompt pass) for which that holds, or the largest h if none.
`split_*` stack the chunks along a new leading axis for `jax.lax.scan` / `jax.lax.map`;
`merge_rows` puts per-chunk results back in row order.
"""
from __future__ import annotations

import math
from typing import NamedTuple


class Layout(NamedTuple):
  batch: int     # B prompts
  group: int     # G rollouts per prompt
  prompts: int   # p prompts per chunk
  rows: int      # h rollouts of each of them per chunk

  @property
  def chunks(self) -> int:
    return (self.batch // self.prompts) * (self.group // self.rows)

  @property
  def size(self) -> int:
    return self.prompts * self.rows


def layout(batch: int, group: int, size: int, what: str = "micro-batch size",
           shards: int = 1) -> Layout:
  """The chunks of `size` rollouts of a batch of `batch` prompts x `group` rollouts whose rows
  are split over `shards` devices (see the module docstring)."""
  n = batch * group
  if size < 1 or n % size:
    raise ValueError(f"{what} {size} does not divide the {n} rollouts of a batch "
                     f"({batch} prompts x {group})")
  fits = [h for h in range(math.gcd(size, group), 0, -1)
          if group % h == 0 and size % h == 0 and batch % (size // h) == 0]
  balanced = [h for h in fits if (size // h) % shards == 0]
  rows = (balanced or fits)[0]
  return Layout(batch, group, size // rows, rows)


# Array methods only (reshape, transpose, repeat): the same code reshapes numpy and jax arrays.

def split_prompts(x, lay: Layout):
  """[B, ...] per-prompt values -> [C, p, ...]: each chunk's prompts, in its row order."""
  stride, rest = lay.batch // lay.prompts, x.shape[1:]
  x = x.reshape((lay.prompts, stride) + rest).swapaxes(0, 1)[:, None]  # [B/p, 1, p, ...]
  x = x.repeat(lay.group // lay.rows, axis=1)
  return x.reshape((lay.chunks, lay.prompts) + rest)


def split_rows(x, lay: Layout):
  """[N, ...] per-rollout values -> [C, p * h, ...], prompt-major within a chunk."""
  stride, slices, rest = lay.batch // lay.prompts, lay.group // lay.rows, x.shape[1:]
  x = x.reshape((lay.prompts, stride, slices, lay.rows) + rest)
  x = x.transpose((1, 2, 0, 3) + tuple(range(4, x.ndim)))  # [B/p, G/h, p, h, ...]
  return x.reshape((lay.chunks, lay.size) + rest)


def merge_rows(x, lay: Layout):
  """The inverse of `split_rows`: [C, p * h, ...] -> [N, ...]."""
  stride, slices, rest = lay.batch // lay.prompts, lay.group // lay.rows, x.shape[2:]
  x = x.reshape((stride, slices, lay.prompts, lay.rows) + rest)
  x = x.transpose((2, 0, 1, 3) + tuple(range(4, x.ndim)))  # [p, B/p, G/h, h, ...]
  return x.reshape((lay.batch * lay.group,) + rest)
