"""Per-device memory of the train state for each model scale and mesh, from the sharded shapes.

  python benchmarks/memory.py [--meshes 1,1,1 1,8,1 ...] [--fsdp-min-size N]

Counts what lives on a device between steps: the policy parameters, the AdamW
state of the run's optimizer (configs/base.py: two float32 moments per parameter and a
step count) and the frozen reference parameters (a run with beta > 0), each laid out by
`focal.sharding.state_shardings` with the default TENSOR_RULES. Activations, the
KV cache and XLA scratch are not counted: they depend on batch and sequence
length. Nothing is allocated: shapes come from jax.eval_shape on abstract meshes,
so a pod's numbers can be computed on a laptop.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.engine_build import run_config  # noqa: E402
from focal import components, sharding, state_init  # noqa: E402
from focal.models.scales import SCALES, param_count  # noqa: E402
from focal.models.transformer import abstract_model  # noqa: E402

MESHES = ("1,1,1", "8,1,1", "1,8,1", "2,4,1", "1,4,2", "1,2,4")
PARTS = ("params", "opt_state", "ref_params")
MIB = 2 ** 20


def abstract_state(config):
  """A TrainState of ShapeDtypeStructs for the model `config` as a run of configs/base.py with
  the KL term on (beta > 0: the state holds the reference) builds it (`state_init.initial_state`
  with the run's optimizer and aggregator)."""
  _, params = abstract_model(config)
  run = run_config(grpo__beta=0.04)
  settings = components.grpo_settings(run, eos_id=None, pad_id=0)
  tx, agg = components.optimizer(run), components.make_aggregator(run)
  return jax.eval_shape(
      lambda p: state_init.initial_state(run, settings, p, tx, agg, num_prompts=1,
                                         max_criteria=1), params)


def device_bytes(tree, shardings) -> int:
  """Bytes one device holds of `tree` under `shardings` (all devices hold the same amount)."""
  total = 0
  for leaf, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    shape = sharding.shard_shape(leaf.shape, s.spec, dict(s.mesh.shape))
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def table(meshes, fsdp_min_size):
  rows = []
  for name, config in SCALES.items():
    state = abstract_state(config)
    for text in meshes:
      mesh = sharding.abstract_mesh([int(s) for s in text.split(",")])
      shardings = sharding.state_shardings(state, mesh, fsdp_min_size=fsdp_min_size)
      mib = {part: device_bytes(getattr(state, part), getattr(shardings, part)) / MIB
             for part in PARTS}
      rows.append((name, param_count(state.params) / 1e6, text, mib))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--meshes", nargs="+", default=list(MESHES),
                      help="mesh shapes as data,fsdp,tensor")
  parser.add_argument("--fsdp-min-size", type=int, default=sharding.FSDP_MIN_SIZE)
  args = parser.parse_args(argv)
  print("| scale | params (M) | mesh (data,fsdp,tensor) | params MiB/dev | AdamW MiB/dev "
        "| ref MiB/dev | total MiB/dev | vs 1 device |")
  print("|---|---|---|---|---|---|---|---|")
  single = {}
  for name, millions, mesh, mib in table(args.meshes, args.fsdp_min_size):
    total = sum(mib.values())
    single.setdefault(name, total if mesh == "1,1,1" else None)
    ratio = f"{total / single[name]:.2f}x" if single[name] else "-"
    print(f"| {name} | {millions:.2f} | ({mesh}) | {mib['params']:.3f} | {mib['opt_state']:.3f} "
          f"| {mib['ref_params']:.3f} | {total:.3f} | {ratio} |")


if __name__ == "__main__":
  main()
