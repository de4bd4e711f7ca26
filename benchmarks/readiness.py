"""Accelerator readiness of the jitted GRPO step, checked on 8 simulated CPU devices.

  python benchmarks/readiness.py                 # the report
  python benchmarks/readiness.py --json          # the facts as one JSON line (tests read it)
  python benchmarks/readiness.py --mesh 1,4,2

Sets XLA_FLAGS=--xla_force_host_platform_device_count=8 for itself (before JAX starts) unless
XLA_FLAGS is already set, builds a small model's engine, jits `train_step` over a
('data', 'fsdp', 'tensor') mesh with `focal.sharding.shard_train_step` (state in its partition
rule shardings and donated, batch rows over data x fsdp, metrics replicated), and reports from
the lowered and compiled program:
  * programs: HLO modules in the compiled executable (one = one dispatch per iteration);
  * host round trips: callback custom-calls, infeed/outfeed/send/recv in the HLO, and callback
    primitives anywhere in the jaxpr (none = the step never waits on Python);
  * donation: state leaves whose buffers the executable aliases to an output;
  * shardings: each parameter's PartitionSpec as compiled, and the collectives XLA inserted.
What this means on a TPU or GPU is in docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

if __name__ == "__main__" and "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

CALLBACK_TARGETS = re.compile(r'custom_call_target="([^"]*callback[^"]*)"', re.IGNORECASE)
TRANSFER_OPS = re.compile(r"\b(infeed|outfeed|send|recv|send-done|recv-done)\(")
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def jaxpr_primitives(jaxpr) -> set[str]:
  """Names of every primitive in a (closed) jaxpr, sub-jaxprs (loops, conds, jits) included."""
  names = set()
  for eqn in jaxpr.jaxpr.eqns if hasattr(jaxpr, "jaxpr") else jaxpr.eqns:
    names.add(eqn.primitive.name)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
          names |= jaxpr_primitives(sub)
  return names


def host_round_trips(fn, *args) -> dict:
  """What in `fn(*args)` (jitted) would make the device wait on the host: callback primitives in
  its jaxpr, callback custom-calls and host transfers in its HLO; and its number of XLA
  programs (HLO modules)."""
  jaxpr = jax.make_jaxpr(fn)(*args)
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  return {"jaxpr_callbacks": sorted(p for p in jaxpr_primitives(jaxpr) if "callback" in p),
          "hlo_callbacks": sorted(set(CALLBACK_TARGETS.findall(hlo))),
          "host_transfers": sorted(set(TRANSFER_OPS.findall(hlo))),
          "hlo_modules": hlo.count("HloModule ")}


def small_engine(batch_size: int):
  """A 2-layer model's engine, state and batch (shapes divisible by the meshes used here), built
  from configs/base.py with a KL term (so the state holds a reference) by the loop's own
  builders (benchmarks/engine_build.py)."""
  from benchmarks.engine_build import engine_for, run_config
  from focal.batch import PromptBatch
  from focal.models.transformer import ModelConfig
  from focal.rubric import RubricBatch
  cfg = ModelConfig(vocab_size=260, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                    d_ff=128, max_seq_len=32)
  run = run_config(aggregator__name="pow3r", grpo__group_size=4, grpo__max_new_tokens=8,
                   grpo__beta=0.05, data__prompts_per_step=batch_size)

  def grade(features, response, mask):
    return jnp.any((response == features[:, :1]) & mask, -1, keepdims=True).astype(jnp.float32)

  built = engine_for(run, cfg, grade, num_prompts=batch_size, max_criteria=1, eos_id=258,
                     pad_id=256)
  tokens = np.tile(np.arange(97, 105, dtype=np.int32), (batch_size, 1))
  rubric = RubricBatch.from_lists([[{"weight": 1.0, "category": 0}]] * batch_size,
                                  prompt_ids=list(range(batch_size)))
  batch = PromptBatch(jnp.asarray(tokens), jnp.ones(tokens.shape, bool),
                      jnp.full((batch_size, 1), 97, jnp.int32), rubric)
  return built.engine, built.state, batch


def facts(mesh_shape) -> dict:
  from focal import sharding
  mesh = sharding.make_mesh(mesh_shape)
  engine, state, batch = small_engine(batch_size=2 * sharding.batch_size_multiple(mesh))
  state_sh = sharding.state_shardings(state, mesh)
  batch_sh = sharding.batch_shardings(batch, mesh)
  step = sharding.shard_train_step(engine.train_step, mesh, state_sh, batch_sh)
  args = (sharding.abstract(state, state_sh), sharding.abstract(batch, batch_sh))
  compiled = step.lower(*args).compile()
  hlo = compiled.as_text()
  # Entries "{output index}: (parameter, {}, may-alias)"; the state's leaves are the first
  # parameters of the flattened (state, batch).
  n_state = len(jax.tree.leaves(state))
  aliased = re.findall(r"\}: \((\d+), \{", hlo.split("\n", 1)[0])
  donated = len({int(i) for i in aliased if int(i) < n_state})
  compiled_params = compiled.input_shardings[0][0].params
  specs = {sharding.path_str(path): str(s.spec) for path, s in
           jax.tree_util.tree_leaves_with_path(compiled_params)}
  return {"devices": jax.device_count(), "mesh": dict(mesh.shape), "state_leaves": n_state,
          "donated_state_leaves": donated,
          "collectives": {c: len(re.findall(rf"\b{c}(?:-start)?\(", hlo)) for c in COLLECTIVES},
          "param_specs": specs, **host_round_trips(engine.train_step, state, batch),
          # The sharded executable itself, not the single-device one host_round_trips compiles.
          "hlo_modules": hlo.count("HloModule ")}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mesh", default="2,2,2", help="data,fsdp,tensor")
  parser.add_argument("--json", action="store_true", help="print the facts as one JSON line")
  args = parser.parse_args(argv)
  out = facts([int(x) for x in args.mesh.split(",")])
  if args.json:
    print(json.dumps(out))
    return
  print(f"jax {jax.__version__}: {out['devices']} devices ({jax.devices()[0].platform}), mesh "
        f"{out['mesh']}")
  print(f"XLA programs per train_step: {out['hlo_modules']}")
  print(f"host round trips: jaxpr callbacks {out['jaxpr_callbacks'] or 'none'}, HLO callbacks "
        f"{out['hlo_callbacks'] or 'none'}, host transfers {out['host_transfers'] or 'none'}")
  print(f"donation: {out['donated_state_leaves']} of {out['state_leaves']} state leaves aliased "
        "to outputs")
  print("collectives in the step: " + ", ".join(f"{k} {v}" for k, v in out["collectives"].items()))
  print("parameter shardings as compiled:")
  for path, spec in out["param_specs"].items():
    print(f"  {path:40s} {spec}")


if __name__ == "__main__":
  main()
