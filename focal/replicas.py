"""How the loop places runs on devices: one run sharded over the mesh, or several seeds
stacked along a leading axis and stepped by one vmapped program on the same mesh.

Both expose the same few operations, so `focal.loop` has a single loop:
  restore_target(state)   the (placed) target a run's checkpoint restores onto
  combine(states)         the device state the step consumes
  step(state, t, last)    (state, metrics, [training-prompt rows of each run]) of GRPO
                          iteration t: the fused jitted step, or rollout -> host grader ->
                          learn (focal.host_step) for a judge or rules
  take(tree, i)           run i's slice of a state or of metrics
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from focal import distributed, sharding
from focal.graders import kinds as grader_kinds
from focal.host_step import HostGradedStep


class ShardedRun:
  """One run, its state sharded over `config.mesh.shape` (multi-host aware)."""

  def __init__(self, config, setup, mesh=None):
    self.mesh_shape = tuple(config.mesh.shape)
    self.mesh = mesh or sharding.make_mesh(self.mesh_shape)
    self.source = setup.source
    self.state_sh = sharding.state_shardings(setup.state, self.mesh,
                                             ref_memory_kind=ref_memory_kind(config))
    self.batch_size = config.data.prompts_per_step
    # Every process builds the same global batch (a pure function of the step) and
    # feeds only its own rows; one process feeds them all.
    self.rows = distributed.process_rows(sharding.batch_dim_sharding(self.mesh), self.batch_size)
    first, _ = self.source.batch(0)
    self.batch_sh = sharding.batch_shardings(distributed.process_slice(first, self.rows),
                                             self.mesh, batch_size=self.batch_size)
    if setup.grader.fused:
      self._fused = sharding.shard_train_step(setup.engine.train_step, self.mesh, self.state_sh,
                                              self.batch_sh)
      self._host = None
    else:
      limit, field = grader_kinds.invalid_limit(config)
      self._host = HostGradedStep(
          setup, self.mesh, self.state_sh, self.batch_sh, self.batch, max_invalid_frac=limit,
          overlap=bool(config.grader.overlap), limit_field=field)

  def programs(self) -> dict:
    """The jitted programs `step` calls, by name: 'train' (an in-jit grader), or 'rollout'
    and 'learn' around a host grader (focal.plan compiles exactly these)."""
    return {"train": self._fused} if self._host is None else self._host.programs()

  def restore_target(self, state):
    # The restore target carries the shardings, so restored arrays land on the mesh.
    return sharding.put(state, self.state_sh)

  def combine(self, states):
    return states[0]

  def batch(self, step: int):
    batch, idx = self.source.batch(step)
    local = distributed.process_slice(batch, self.rows)
    return sharding.put_process_batch(local, self.batch_sh, self.batch_size), idx

  def step(self, state, t: int, last: bool = False):
    if self._host is not None:
      return self._host(state, t, last)
    batch, idx = self.batch(t)
    state, metrics = self._fused(state, batch)
    return state, metrics, [idx]

  def take(self, tree, i: int):
    del i
    return tree


class StackedSeeds:
  """Runs differing only in seed, stacked along a leading seed axis [S, ...] and stepped by
  one vmapped program on `config.mesh.shape` (multi-host aware).

  The seed axis is replicated: every device holds its shard of every seed, laid out within
  a seed exactly as one run on the same mesh (`ShardedRun`), so the batch rule is the same
  (prompts per step a multiple of data x fsdp, rows split over ('data', 'fsdp')) and any
  number of seeds fits any mesh. The cost is memory: a device holds S times one run's
  shard. (Sharding the seeds along `data` instead would need S to be a multiple of `data`
  and take `data` away from the batch rows.) On a one-device mesh the program and its
  numbers are those of `jax.jit(jax.vmap(train_step))`, bit for bit.

  With LoRA, seeds whose frozen base is the same (a checkpoint's: only the adapters depend on
  the seed) share one copy of it, unstacked and unmapped; bases that differ (a scale's
  warm start depends on the seed) are stacked like everything else.
  """

  def __init__(self, config, setups: Sequence, mesh=None):
    self.mesh_shape = tuple(config.mesh.shape)
    if not setups[0].grader.fused:
      raise ValueError("seeds are vmapped only with the in-jit grader (grader.kind="
                       "programmatic); train judged runs one seed at a time")
    self.mesh = mesh or sharding.make_mesh(self.mesh_shape)
    self.sources = [s.source for s in setups]
    self.num_seeds = len(setups)
    self.batch_size = config.data.prompts_per_step
    self.seed_sh = sharding.state_shardings(setups[0].state, self.mesh,
                                            ref_memory_kind=ref_memory_kind(config))
    self.shared_base = same_base([s.state for s in setups])
    self.state_sh = seed_axis(self.seed_sh)
    axes = 0
    if self.shared_base:
      self.state_sh = self.state_sh.replace(base=self.seed_sh.base)
      axes = setups[0].state.replace(**{k: 0 for k in vars(setups[0].state) if k != "base"},
                                     base=None)
    self.rows = distributed.process_rows(sharding.batch_dim_sharding(self.mesh), self.batch_size)
    first, _ = self.sources[0].batch(0)
    self.batch_sh = seed_axis(sharding.batch_shardings(
        distributed.process_slice(first, self.rows), self.mesh, batch_size=self.batch_size))
    self._step = jax.jit(jax.vmap(setups[0].engine.train_step, in_axes=(axes, 0),
                                  out_axes=(axes, 0)),
                         in_shardings=(self.state_sh, self.batch_sh),
                         out_shardings=(self.state_sh, sharding.replicated(self.mesh)),
                         donate_argnums=(0,))
    self._stack = jax.jit(_stack, out_shardings=self._unshared(self.state_sh))

  def restore_target(self, state):
    # Each seed's checkpoint restores onto one run's shardings, as `ShardedRun` places it.
    return sharding.put(state, self.seed_sh)

  def _unshared(self, state):
    return state.replace(base=None) if self.shared_base else state

  def combine(self, states):
    stacked = self._stack([self._unshared(s) for s in states])
    return stacked.replace(base=states[0].base) if self.shared_base else stacked

  def batch(self, step: int):
    """The seeds' batches of `step` as one [S, B, ...] array tree, and each seed's rows."""
    pairs = [source.batch(step) for source in self.sources]
    local = _stack([distributed.process_slice(b, self.rows) for b, _ in pairs], np.stack)
    global_rows = (self.num_seeds, self.batch_size)
    placed = jax.tree.map(
        lambda x, sh: jax.make_array_from_process_local_data(sh, x, global_rows + x.shape[2:]),
        local, self.batch_sh)
    return placed, [idx for _, idx in pairs]

  def step(self, state, t: int, last: bool = False):
    del last
    batch, idxs = self.batch(t)
    state, metrics = self._step(state, batch)
    return state, metrics, idxs

  def take(self, tree, i: int):
    if self.shared_base and hasattr(tree, "base"):
      return _take(tree.replace(base=None), i).replace(base=tree.base)
    return _take(tree, i)


def ref_memory_kind(config) -> str:
  """Where the reference policy waits between uses (configs/base.py `mesh.ref_memory_kind`)."""
  return config.mesh.ref_memory_kind


def same_base(states) -> bool:
  """Whether the states hold LoRA bases that are all equal (then one copy serves them all)."""
  bases = [getattr(s, "base", None) for s in states]
  if bases[0] is None:
    return False
  return all(b is bases[0] or jax.tree.all(jax.tree.map(
      lambda x, y: x.shape == y.shape and bool(jnp.array_equal(x, y)), b, bases[0]))
      for b in bases[1:])


def seed_axis(shardings):
  """One run's NamedSharding tree -> the same with a replicated leading seed axis."""
  return jax.tree.map(lambda s: NamedSharding(s.mesh, P(None, *s.spec)), shardings)


def _stack(trees, stack=jnp.stack):
  return jax.tree.map(lambda *x: stack(x), *trees)


@functools.partial(jax.jit, static_argnums=1)
def _take(tree, i: int):
  # Jitted, so that a seed's slice of a sharded (or multi-process) array keeps its layout.
  return jax.tree.map(lambda x: x[i], tree)


def make_replicas(config, setups: Sequence, mesh=None):
  if len(setups) == 1:
    return ShardedRun(config, setups[0], mesh)
  return StackedSeeds(config, setups, mesh)
