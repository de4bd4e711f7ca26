"""How the loop places runs on devices: one run sharded over the mesh, or several seeds
stacked along a leading axis and stepped by one vmapped program.

Both expose the same few operations, so `focal.loop` has a single loop:
  restore_target(state)   the (placed) target a run's checkpoint restores onto
  combine(states)         the device state the step consumes
  step(state, t, last)    (state, metrics, [training-prompt rows of each run]) of GRPO
                          iteration t: the fused jitted step, or rollout -> host grader ->
                          learn (focal.host_step) for a judge or rules
  take(tree, i)           run i's slice of a state or of metrics
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from focal import distributed, sharding
from focal.host_step import HostGradedStep


class ShardedRun:
  """One run, its state sharded over `config.mesh.shape` (multi-host aware)."""

  def __init__(self, config, setup, mesh=None):
    self.mesh_shape = tuple(config.mesh.shape)
    self.mesh = mesh or sharding.make_mesh(self.mesh_shape)
    self.source = setup.source
    self.state_sh = sharding.state_shardings(setup.state, self.mesh)
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
      judge = config.grader.get("judge")
      self._host = HostGradedStep(
          setup, self.mesh, self.state_sh, self.batch_sh, self.batch,
          max_invalid_frac=judge.max_invalid_frac if judge is not None else 0.0,
          overlap=bool(config.grader.get("overlap", False)))

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
  """Runs differing only in seed, stacked along a leading axis and vmapped on one device."""

  def __init__(self, config, setups: Sequence):
    self.mesh_shape = tuple(config.mesh.shape)
    if self.mesh_shape != (1, 1, 1):
      raise ValueError("seeds are vmapped on one device; use mesh.shape=(1, 1, 1)")
    if not setups[0].grader.fused:
      raise ValueError("seeds are vmapped only with the in-jit grader (grader.kind="
                       "programmatic); train judged runs one seed at a time")
    self.sources = [s.source for s in setups]
    self._step = jax.jit(jax.vmap(setups[0].engine.train_step), donate_argnums=(0,))

  def restore_target(self, state):
    return state

  def combine(self, states):
    return _stack(states)

  def step(self, state, t: int, last: bool = False):
    del last
    pairs = [source.batch(t) for source in self.sources]
    state, metrics = self._step(state, _stack([b for b, _ in pairs]))
    return state, metrics, [idx for _, idx in pairs]

  def take(self, tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def _stack(trees):
  return jax.tree.map(lambda *x: jnp.stack(x), *trees)


def make_replicas(config, setups: Sequence, mesh=None):
  if len(setups) == 1:
    return ShardedRun(config, setups[0], mesh)
  return StackedSeeds(config, setups)
