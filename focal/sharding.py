"""Meshes, partition rules and NamedSharding trees for the GRPO engine.

Mesh. Three axes, ('data', 'fsdp', 'tensor'):
  data    pure data parallelism: each group of devices along it holds a full
          (fsdp x tensor sharded) replica of the state and its own rows of the batch.
  fsdp    ZeRO-3 style: parameters, their optimizer moments and the reference
          policy are split along their largest dimension, and batch rows too;
          XLA all-gathers a weight just before it is used.
  tensor  Megatron tensor parallelism inside each layer.
The axes are `AxisType.Auto` (classic GSPMD propagation): `jax.make_mesh`
defaults to Explicit axes, under which the embedding gather needs
out-sharding annotations the model does not carry.

Parameters: `focal.partition_rules` (tensor rules, then FSDP), re-exported here.

Train state. Optimizer moments mirror the parameters: every subtree of
`opt_state` with the parameters' tree structure takes the parameter shardings,
everything else (step counters, scalars) is replicated. The reference
parameters (absent with beta = 0) are sharded like the parameters, in device memory or, with
`ref_memory_kind='pinned_host'`, in the host's memory between uses (the learn step copies them
to the device for its reference pass; `focal.update.to_device`). `step` and `rng` are replicated.

Aggregator state is replicated. It is a per-prompt table (e.g. [num_prompts, K])
that each step gathers and scatters at the batch's `prompt_ids`; those ids are
arbitrary, so a table sharded by prompt would turn every step into an
all-to-all, while a replicated one is read and written locally. The table is
small (num_prompts x K floats: 10k prompts x 32 criteria is 1.3 MB) next to the
parameters, so replicating it costs nothing that matters.

Batches. Every field of a PromptBatch (tokens, mask, features, and each
RubricBatch field) has the batch dimension B first; it is sharded over
('data', 'fsdp') and the rest replicated. The rubric rows go with their prompts
so that the aggregator's [B, G, K] algebra stays local to the devices that hold
those prompts' rollouts. Rollouts ([N, L], N = B * G prompt-major) shard N the
same way, so a device's rollouts are those of its own prompts.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from focal.partition_rules import (FSDP_MIN_SIZE, REPLICATED_RULES, TENSOR_RULES, Rules,  # noqa: F401
                                   add_fsdp, axis_size, fit_spec, match_rule, named,
                                   param_specs, path_str)
from focal.batch import Rollouts

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")



def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A ('data', 'fsdp', 'tensor') mesh of `shape` with Auto axes (see module docstring)."""
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(AXES):
    raise ValueError(f"mesh shape must have {len(AXES)} entries {AXES}, got {shape}")
  n = math.prod(shape)
  if devices is None:
    # A mesh smaller than the machine (one device of eight, say) takes the first devices.
    devices = jax.devices()[:n] if n < jax.device_count() else jax.devices()
  devices = list(devices)
  if n != len(devices):
    raise ValueError(f"mesh shape {shape} needs {n} devices, have {len(devices)}")
  auto = (jax.sharding.AxisType.Auto,) * len(AXES)
  processes = len({d.process_index for d in devices})
  if processes == 1:
    return jax.make_mesh(shape, AXES, axis_types=auto, devices=devices)
  return jax.sharding.Mesh(_per_process_devices(shape, devices, processes), AXES,
                           axis_types=auto)


def _per_process_devices(shape, devices, processes: int):
  """The mesh's device array with each process's devices one contiguous block of batch rows.

  jax.make_mesh orders a TPU slice's chips for its torus; over several hosts (a v5p-16's 8
  chips on 2 hosts) that interleaves the hosts along `fsdp`, so a process's rows would not be
  contiguous and each process could not feed only its own rows (focal.distributed). Processes
  go along `data`, then `fsdp`; within a process the chips keep jax's torus-aware order.
  """
  from jax.experimental import mesh_utils
  data = math.gcd(shape[0], processes)
  fsdp = processes // data
  if shape[1] % fsdp:
    raise ValueError(f"mesh shape {shape}: {processes} processes must split data x fsdp into "
                     f"equal blocks of rows (data x fsdp a multiple of {processes})")
  dcn = (data, fsdp, 1)
  ici = tuple(s // d for s, d in zip(shape, dcn))
  return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=True)


def abstract_mesh(shape: Sequence[int]) -> jax.sharding.AbstractMesh:
  """A device-free mesh of `shape`: enough to compute specs and per-device sizes for any slice."""
  return jax.sharding.AbstractMesh(tuple(int(s) for s in shape), AXES,
                                   axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def mirror_params(tree, params_structure, param_shardings, default):
  """Shardings for `tree` (an optimizer state): subtrees shaped like the params get theirs."""
  def is_param_tree(x):
    return jax.tree.structure(x) == params_structure

  def sharding_of(subtree):
    if is_param_tree(subtree):
      return param_shardings
    return jax.tree.map(lambda _: default, subtree)

  return jax.tree.map(sharding_of, tree, is_leaf=is_param_tree)


REF_MEMORY_KINDS = ("device", "pinned_host")


def state_shardings(state, mesh, rules: Rules = TENSOR_RULES,
                    fsdp_min_size: int = FSDP_MIN_SIZE, strict: bool = False,
                    ref_memory_kind: str = "device"):
  """NamedSharding tree for a whole TrainState (see the module docstring for the choices)."""
  if ref_memory_kind not in REF_MEMORY_KINDS:
    raise ValueError(f"mesh.ref_memory_kind must be one of {REF_MEMORY_KINDS}, got "
                     f"{ref_memory_kind!r}")
  params_sh = named(mesh, param_specs(state.params, mesh, rules, fsdp_min_size, strict))
  rep = replicated(mesh)
  structure = jax.tree.structure(state.params)
  ref_sh = None
  if state.ref_params is not None:
    ref_sh = named(mesh, param_specs(state.ref_params, mesh, rules, fsdp_min_size, strict))
    if ref_memory_kind != "device":
      ref_sh = jax.tree.map(lambda s: s.with_memory_kind(ref_memory_kind), ref_sh)
  base_sh = None  # LoRA's frozen base: laid out like the parameters it holds
  if state.base is not None:
    base_sh = named(mesh, param_specs(state.base, mesh, rules, fsdp_min_size, strict))
  return state.replace(
      step=rep,
      params=params_sh,
      opt_state=mirror_params(state.opt_state, structure, params_sh, rep),
      ref_params=ref_sh,
      agg_state=jax.tree.map(lambda _: rep, state.agg_state),
      rng=rep,
      base=base_sh)


def batch_size_multiple(mesh) -> int:
  """Batch sizes (prompts, and rollouts) must be multiples of this."""
  return axis_size(dict(mesh.shape), BATCH_AXES)


def batch_dim_sharding(mesh) -> NamedSharding:
  """The sharding of every batch leaf: first dimension over ('data', 'fsdp'), rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def leading_dim_shardings(tree, mesh, batch_size: int | None = None):
  """`batch_dim_sharding` for every leaf, after checking that the batch dimension divides.

  `batch_size` is the global batch size when `tree` holds one process's rows;
  by default each leaf's first dimension is taken as global.
  """
  multiple = batch_size_multiple(mesh)

  def sharding_of(path, leaf):
    size = leaf.shape[0] if batch_size is None else batch_size
    if size % multiple:
      raise ValueError(f"{path_str(path)}: batch dimension {size} is not a multiple of "
                       f"data x fsdp = {multiple}")
    return batch_dim_sharding(mesh)

  return jax.tree_util.tree_map_with_path(sharding_of, tree)


def batch_shardings(batch, mesh, batch_size: int | None = None):
  """NamedSharding tree for a PromptBatch (rubric included): B over ('data', 'fsdp').

  Pass the global `batch_size` when `batch` is one process's rows.
  """
  return leading_dim_shardings(batch, mesh, batch_size)


def rollout_shardings(mesh) -> Rollouts:
  """Rollouts' shardings: N = B * G rows over ('data', 'fsdp'), like their prompts."""
  return Rollouts(batch_dim_sharding(mesh), batch_dim_sharding(mesh))


def shard_train_step(train_step: Callable, mesh, state_sh, batch_sh, donate: bool = True):
  """`train_step` jitted over the mesh: state and batch in their shardings, metrics replicated.

  The state is donated (its buffers are reused for the new state), so do not
  read the old state after a call.
  """
  return jax.jit(train_step, in_shardings=(state_sh, batch_sh),
                 out_shardings=(state_sh, replicated(mesh)),
                 donate_argnums=(0,) if donate else ())


def shard_rollout_step(rollout_step: Callable, mesh, state_sh, batch_sh):
  """rollout_step jitted over the mesh (for host-side graders), state donated."""
  return jax.jit(rollout_step, in_shardings=(state_sh, batch_sh),
                 out_shardings=(state_sh, rollout_shardings(mesh)), donate_argnums=(0,))


def shard_learn_step(learn_step: Callable, mesh, state_sh, batch_sh):
  """learn_step jitted over the mesh; scores and valid [N, K] are sharded like the rollouts."""
  rows = batch_dim_sharding(mesh)
  return jax.jit(learn_step, in_shardings=(state_sh, batch_sh, rollout_shardings(mesh), rows, rows),
                 out_shardings=(state_sh, replicated(mesh)), donate_argnums=(0,))


def put(tree, shardings):
  """Places a host tree (the same value on every process) onto `shardings`.

  Works in one process and in many: each device's shard is cut from a host
  copy, so the result never aliases `tree` (jax.device_put can reuse a source
  buffer for one replica, and donating the placed state to a step would then
  delete the caller's arrays). Typed PRNG keys travel as their raw key data.
  A state too large for one host is better built sharded from the start:
  `jax.jit(make_state, out_shardings=shardings)()`.
  """
  def place(x, sharding):
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
      data = place(jax.random.key_data(x), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(place, tree, shardings)


def put_process_batch(local_batch, shardings, global_batch_size: int):
  """Builds the global batch from each process's own rows (see `distributed.process_rows`).

  In one process the local batch is the global batch.
  """
  def place(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(sharding, x, (global_batch_size,) + x.shape[1:])

  return jax.tree.map(place, local_batch, shardings)


def abstract(state, shardings):
  """ShapeDtypeStructs carrying `shardings`: a restore target for another mesh."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)


def shard_shape(shape: Sequence[int], spec: P, axis_sizes) -> tuple[int, ...]:
  """The per-device shape of an array of `shape` under `spec` (dims divide, see fit_spec)."""
  entries = list(spec) + [None] * (len(shape) - len(spec))
  return tuple(d // axis_size(axis_sizes, axes) for d, axes in zip(shape, entries))
