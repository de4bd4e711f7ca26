"""The learn step and the rollout compiled for a TPU slice without a TPU: attention kernels side by side.

    python -m benchmarks.tpu_attention                       # v5e:2x2, mesh (1, 2, 2)
    python -m benchmarks.tpu_attention --topology v5p:2x2x1 --mesh 1,4,1 --layers 4

Needs libtpu (`pip install "jax[tpu]==0.10.2"`), which compiles for the topology's devices
(jax.experimental.topologies) on this CPU; nothing runs and no network is used. For a small
Qwen3-like model (--layers of width 1,024, 8 query / 4 key-value heads of 128, 32k vocabulary,
bfloat16 compute, remat 'block'), it lowers under `jax.set_mesh` and compiles, per attention
kernel (ModelConfig.attention):
  * the learn step's differentiated part: value_and_grad of `grouped_response_logprobs` (the
    prompt once per group, the responses over its shared cache), parameters sharded by
    focal.partition_rules, rows over ('data', 'fsdp');
  * the rollout: `focal.sampling.sample` with G rollouts per prompt (prefill once, decode steps
    scanning the stacked layers over the shared prefix and the bucket chunks).
It prints per chip XLA's temporary bytes (`memory_analysis()`), the argument bytes, the count
of Mosaic kernels (tpu_custom_call: splash attention) in the program, and the compile seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from focal.models.transformer import (ModelConfig, abstract_model,  # noqa: E402
                                      grouped_response_logprobs)
from focal.partition_rules import named, param_specs  # noqa: E402
from focal.sampling import sample  # noqa: E402

MIB = 2 ** 20


def tpu_mesh(topology: str, shape: tuple[int, ...]) -> Mesh:
  # libtpu takes a machine-wide lock file when it starts, which any other JAX process with libtpu
  # may hold; compiling for a topology needs no exclusive TPU access (as focal.plan.chips).
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies
  chips = tuple(int(x) for x in topology.split(":")[1].split("x"))
  topo = topologies.get_topology_desc(topology_name=topology, platform="tpu",
                                      chip_config_name="default",
                                      chips_per_host_bounds=(chips + (1, 1))[:3], num_slices=1,
                                      wrap=(False, False, False))
  return Mesh(np.array(topo.devices).reshape(shape), ("data", "fsdp", "tensor"),
              axis_types=(jax.sharding.AxisType.Auto,) * 3)


def programs(config: ModelConfig, mesh: Mesh, batch: int, group: int, prompt: int, new: int):
  """{name: (jitted function, abstract args)} of the learn step and the rollout."""
  graphdef, params = abstract_model(config)
  shardings = named(mesh, param_specs(params, mesh))
  params = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s), params,
                        shardings)
  rows = NamedSharding(mesh, P(("data", "fsdp")))
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=rows)
  n = batch * group

  def loss(params, prompts, prompt_mask, responses, response_mask, adv):
    logp, entropy = grouped_response_logprobs(graphdef, params, prompts, prompt_mask, responses,
                                              response_mask, group, with_entropy=True)
    return jnp.sum(logp * response_mask * adv[:, None]) / jnp.sum(response_mask), jnp.mean(entropy)

  def rollout(params, prompts, prompt_mask, key):
    out = sample(graphdef, params, prompts, prompt_mask, key, max_new_tokens=new, eos_id=None,
                 pad_id=0, group_size=group)
    return out.tokens, out.logprobs

  replicated = NamedSharding(mesh, P())
  learn = jax.jit(jax.value_and_grad(loss, has_aux=True),
                  out_shardings=((replicated, replicated), shardings))
  prompts = (spec((batch, prompt), jnp.int32), spec((batch, prompt), bool))
  return {"learn": (learn, (params, *prompts, spec((n, new), jnp.int32), spec((n, new), bool),
                            spec((n,), jnp.float32))),
          "rollout": (jax.jit(rollout), (params, *prompts,
                                         jax.ShapeDtypeStruct((), jax.random.key(0).dtype,
                                                              sharding=replicated)))}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--topology", default="v5e:2x2")
  parser.add_argument("--mesh", default="1,2,2", help="data,fsdp,tensor")
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--attention", nargs="+", default=["xla", "auto"])
  parser.add_argument("--programs", nargs="+", default=["learn", "rollout"])
  parser.add_argument("--batch", type=int, default=8, help="prompts")
  parser.add_argument("--group", type=int, default=4, help="rollouts per prompt")
  parser.add_argument("--prompt", type=int, default=256)
  parser.add_argument("--new", type=int, default=256)
  args = parser.parse_args(argv)
  mesh = tpu_mesh(args.topology, tuple(int(x) for x in args.mesh.split(",")))
  base = ModelConfig(vocab_size=32768, d_model=1024, n_layers=args.layers, n_heads=8,
                     n_kv_heads=4, head_dim=128, d_ff=2816, qk_norm=True, dtype="bfloat16",
                     max_seq_len=args.prompt + args.new, remat="block")
  print(f"{args.topology}, mesh {args.mesh}: {args.batch} prompts x {args.group}, "
        f"{args.prompt} + {args.new} tokens, {args.layers} layers (load {os.getloadavg()[0]:.1f})")
  for attention in args.attention:
    built = programs(dataclasses.replace(base, attention=attention), mesh, args.batch,
                     args.group, args.prompt, args.new)
    for name in args.programs:
      fn, fn_args = built[name]
      start = time.perf_counter()
      with jax.set_mesh(mesh):
        compiled = fn.lower(*fn_args).compile()
      memory = compiled.memory_analysis()
      print(f"{name:7s} attention {attention:6s}: temp {memory.temp_size_in_bytes / MIB:8.1f} "
            f"MiB, arguments {memory.argument_size_in_bytes / MIB:7.1f} MiB per chip, Mosaic "
            f"kernels {compiled.as_text().count('tpu_custom_call')}, compiled in "
            f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
  main()
