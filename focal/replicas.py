"""How the loop places runs on devices: one run sharded over the mesh, or several seeds
stacked along a leading axis and stepped by one vmapped program.

Both expose the same few operations, so `focal.loop` has a single loop:
  restore_target(state)   the (placed) target a run's checkpoint restores onto
  combine(states)         the device state the step consumes
  batch(step)             (device batch of step `step`, [training-prompt rows of each run])
  step(state, batch)      (state, metrics): the jitted, donated GRPO iteration
  take(tree, i)           run i's slice of a state or of metrics
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from focal import distributed, sharding


class ShardedRun:
  """One run, its state sharded over `config.mesh.shape` (multi-host aware)."""

  def __init__(self, config, setup):
    self.mesh_shape = tuple(config.mesh.shape)
    self.mesh = sharding.make_mesh(self.mesh_shape)
    self.source = setup.source
    self.state_sh = sharding.state_shardings(setup.state, self.mesh)
    self.batch_size = config.data.prompts_per_step
    # Every process builds the same global batch (a pure function of the step) and
    # feeds only its own rows; one process feeds them all.
    self.rows = distributed.process_rows(sharding.batch_dim_sharding(self.mesh), self.batch_size)
    first, _ = self.source.batch(0)
    self.batch_sh = sharding.batch_shardings(distributed.process_slice(first, self.rows),
                                             self.mesh, batch_size=self.batch_size)
    self.step = sharding.shard_train_step(setup.engine.train_step, self.mesh, self.state_sh,
                                          self.batch_sh)

  def restore_target(self, state):
    # The restore target carries the shardings, so restored arrays land on the mesh.
    return sharding.put(state, self.state_sh)

  def combine(self, states):
    return states[0]

  def batch(self, step: int):
    batch, idx = self.source.batch(step)
    local = distributed.process_slice(batch, self.rows)
    return sharding.put_process_batch(local, self.batch_sh, self.batch_size), [idx]

  def take(self, tree, i: int):
    del i
    return tree


class StackedSeeds:
  """Runs differing only in seed, stacked along a leading axis and vmapped on one device."""

  def __init__(self, config, setups: Sequence):
    self.mesh_shape = tuple(config.mesh.shape)
    if self.mesh_shape != (1, 1, 1):
      raise ValueError("seeds are vmapped on one device; use mesh.shape=(1, 1, 1)")
    self.sources = [s.source for s in setups]
    self.step = jax.jit(jax.vmap(setups[0].engine.train_step), donate_argnums=(0,))

  def restore_target(self, state):
    return state

  def combine(self, states):
    return _stack(states)

  def batch(self, step: int):
    pairs = [source.batch(step) for source in self.sources]
    return _stack([b for b, _ in pairs]), [idx for _, idx in pairs]

  def take(self, tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def _stack(trees):
  return jax.tree.map(lambda *x: jnp.stack(x), *trees)


def make_replicas(config, setups: Sequence):
  return ShardedRun(config, setups[0]) if len(setups) == 1 else StackedSeeds(config, setups)
