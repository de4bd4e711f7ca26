"""Compiling the loop's programs for a TPU slice and reading what they need per chip.

`compile_programs(config, slice)` builds the run's placement exactly as the loop does
(`focal.replicas.ShardedRun`: the same jitted functions, shardings and donation) on the slice's
compile-only devices, lowers each program on abstract arguments and compiles it. Per chip:

  resident    the TrainState's bytes in device memory, from its shardings (counted once: it
              stays between programs; a reference in host memory is listed apart)
  inputs      the program's other arguments (batch, rollouts, verdicts)
  output      its outputs that alias no donated input (metrics; rollouts)
  temp, code  XLA's temporaries and generated code (`memory_analysis()`)
  total       resident + inputs + output + temp + code: the program's peak

`memory_analysis()` leaves out arguments a program does not read (the rollout does not read
the optimizer state, which is still resident), hence the resident state from the shardings.
A program over the chip's memory does not compile (RESOURCE_EXHAUSTED): its record says so
and carries the temporaries XLA asked for.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time

import jax
import jax.numpy as jnp

from focal import evaluation, sampling, sharding
from focal.batch import Rollouts
from focal.iteration import policy_params
from focal.plan import flops as flops_lib
from focal.plan.chips import GIB, Slice, devices
from focal.plan.setup import abstract_setup
from focal.replicas import ShardedRun


@dataclasses.dataclass
class Program:
  name: str
  compiled: bool
  compile_s: float
  resident_gib: float
  inputs_gib: float = 0.0
  output_gib: float = 0.0
  temp_gib: float = 0.0
  code_gib: float = 0.0
  host_gib: float = 0.0         # arguments in host memory (a reference with pinned_host)
  flops: float = 0.0            # per chip, every loop's trips counted (focal.plan.flops)
  bytes_accessed: float = 0.0   # per chip, XLA's figure scaled to the trips likewise
  xla_flops: float = 0.0        # per chip as XLA's cost analysis gives it (loop bodies once)
  xla_bytes: float = 0.0
  error: str = ""

  @property
  def total_gib(self) -> float:
    return self.resident_gib + self.inputs_gib + self.output_gib + self.temp_gib + self.code_gib


def per_chip_bytes(tree, shardings, memory_kind: str | None = "device") -> int:
  """Bytes one device holds of `tree` (ShapeDtypeStructs) under `shardings` (NamedShardings),
  counting only leaves in `memory_kind` (None: all)."""
  total = 0
  for leaf, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    if memory_kind is not None and (sh.memory_kind or "device") != memory_kind:
      continue
    shape = sharding.shard_shape(leaf.shape, sh.spec, dict(sh.mesh.shape))
    total += math.prod(shape) * _itemsize(leaf.dtype)
  return total


def _itemsize(dtype) -> int:
  if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return 8  # threefry key data: 2 x uint32
  return jnp.dtype(dtype).itemsize


def _abstract(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def program_args(run: ShardedRun, setup) -> dict:
  """name -> (abstract arguments, their shardings) of each program `run.programs()` holds."""
  state = _abstract(setup.state, run.state_sh)
  batch, _ = setup.source.batch(0)
  batch = _abstract(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch),
                    run.batch_sh)
  n = setup.source.batch_size * setup.settings.group_size
  rows = sharding.batch_dim_sharding(run.mesh)
  shaped = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=rows)
  length, k = setup.settings.max_new_tokens, setup.source.max_criteria
  rollouts = Rollouts(shaped((n, length), jnp.int32), shaped((n, length), jnp.bool_))
  scores, valid = shaped((n, k), jnp.float32), shaped((n, k), jnp.bool_)
  return {"train": (state, batch), "rollout": (state, batch),
          "learn": (state, batch, rollouts, scores, valid)}


def evaluate_program(setup, state, eval_rows: int):
  """(jitted function, abstract args) of one call of evaluation's sampler
  (`focal.evaluation.sample_rows`): `grpo.rollout_micro_batch_size` rows (all `eval_rows`
  without it), sampled at eval.temperature, rows split over the batch axes when they divide."""
  s, c = setup.settings, setup.config.eval
  rows = min(s.rollout_micro_batch_size or eval_rows, eval_rows)
  params = policy_params(state)
  rows_sh, cols_sh = evaluation.row_shardings(params, rows)
  mesh = jax.tree.leaves(params)[0].sharding.mesh
  rows_sh = rows_sh or sharding.replicated(mesh)
  cols_sh = cols_sh or sharding.replicated(mesh)
  width = setup.source.width
  fn = jax.jit(lambda p, tokens, mask, uniforms: sampling.sample(
      setup.graphdef, p, tokens, mask, jax.random.key(0), uniforms=uniforms,
      max_new_tokens=s.max_new_tokens, temperature=c.temperature, eos_id=s.eos_id,
      pad_id=s.pad_id))
  args = (params, jax.ShapeDtypeStruct((rows, width), jnp.int32, sharding=rows_sh),
          jax.ShapeDtypeStruct((rows, width), jnp.bool_, sharding=rows_sh),
          jax.ShapeDtypeStruct((s.max_new_tokens, rows), jnp.float32, sharding=cols_sh))
  return fn, args


def compile_one(name: str, fn, args, resident: int, host: int, chips: int,
                decode_steps: int) -> Program:
  """Compiles `fn` on `args`; a program too large for the chip comes back uncompiled."""
  inputs = sum(per_chip_bytes(a, jax.tree.map(lambda x: x.sharding, a)) for a in args[1:])
  start = time.perf_counter()
  traced = fn.trace(*args)
  total, once = flops_lib.count(traced.jaxpr, _while_trips(traced.jaxpr, decode_steps))
  try:
    compiled = traced.lower().compile()
  except Exception as e:  # XLA raises JaxRuntimeError; keep anything else visible too
    message = str(e)
    if "RESOURCE_EXHAUSTED" not in message:
      raise
    need = _sizes(message)
    # Not compiled: the matmul FLOPs of the jaxpr, split evenly over the chips.
    return Program(name, False, time.perf_counter() - start, resident / GIB, inputs / GIB,
                   temp_gib=need[0] if need else 0.0, host_gib=host / GIB, flops=total / chips,
                   error=message.strip().splitlines()[0][:300])
  seconds = time.perf_counter() - start
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis() or {}
  cost = cost[0] if isinstance(cost, list) else cost
  xla_flops, xla_bytes = (float(cost.get(k, 0.0)) for k in ("flops", "bytes accessed"))
  # XLA counted each loop body once: scale its figures by the jaxpr's trip-counted ratio.
  scale = total / once if once else 1.0
  output = max(mem.output_size_in_bytes - mem.alias_size_in_bytes, 0)
  return Program(name, True, seconds, resident / GIB, inputs / GIB, output / GIB,
                 mem.temp_size_in_bytes / GIB, mem.generated_code_size_in_bytes / GIB,
                 host / GIB, xla_flops * scale, xla_bytes * scale, xla_flops, xla_bytes)


def _while_trips(jaxpr, decode_steps: int) -> float:
  whiles = flops_lib.count_whiles(jaxpr)
  return decode_steps / whiles if whiles else 1.0


def _sizes(message: str) -> list[float]:
  """GiB figures in an XLA out-of-memory message ('... temporaries (22.50G) exceeds ...')."""
  scale = {"K": 2 ** -20, "M": 2 ** -10, "G": 1.0, "T": 2 ** 10}
  return [float(v) * scale[u] for v, u in re.findall(r"\(([\d.]+)([KMGT])\)", message)]


def compile_programs(config, spec: Slice, num_prompts: int, max_criteria: int,
                     eval_rows: int = 0, only: tuple = (), log=lambda s: None
                     ) -> tuple[list[Program], dict]:
  """Every program the loop runs for `config` on `spec`, compiled (evaluation's sampler too
  when `eval_rows` > 0: held-out prompts x samples); and facts about the run."""
  shape = tuple(int(s) for s in config.mesh.shape)
  if math.prod(shape) != spec.chips:
    raise ValueError(f"config.mesh.shape={shape} has {math.prod(shape)} devices; {spec.name} "
                     f"has {spec.chips} chips: pass --config.mesh.shape='(1,{spec.chips},1)' "
                     f"(or another layout of {spec.chips})")
  setup = abstract_setup(config, num_prompts, max_criteria)
  mesh = sharding.make_mesh(shape, devices(spec))
  run = ShardedRun(config, setup, mesh)
  state_sh = run.state_sh
  resident = per_chip_bytes(setup.state, state_sh)
  host = per_chip_bytes(setup.state, state_sh, "pinned_host")
  args = program_args(run, setup)
  programs, jitted = [], dict(run.programs())
  if eval_rows:
    jitted["evaluate"], args["evaluate"] = evaluate_program(setup, args["rollout"][0], eval_rows)
  for name, fn in jitted.items():
    if only and name not in only:
      continue
    log(f"  compiling {name} ...")
    programs.append(compile_one(name, fn, args[name], resident, host, spec.chips,
                                setup.settings.max_new_tokens))
    p = programs[-1]
    log(f"  {name}: {'compiled' if p.compiled else 'refused'} in {p.compile_s:.0f} s, "
        f"{p.total_gib:.2f} GiB per chip")
  facts = {"mesh": shape, "batch_shards": shape[0] * shape[1],
           "prompts": setup.source.batch_size, "prompt_tokens": setup.source.width,
           "rollouts": setup.source.batch_size * setup.settings.group_size,
           "params": _count(policy_params(setup.state)),
           "state_gib": {k: per_chip_bytes(getattr(setup.state, k), getattr(state_sh, k),
                                           None) / GIB
                         for k in ("params", "opt_state", "ref_params")
                         + (("base",) if setup.state.base is not None else ())},
           "ref_memory_kind": config.mesh.ref_memory_kind}
  if setup.state.base is not None:  # LoRA: what the optimizer sees
    facts["trainable"] = _count(setup.state.params)
  return programs, facts


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
