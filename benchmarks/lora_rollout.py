"""Rollouts of a LoRA policy: the sampler reading base + adapters, or the adapters merged into
the kernels once per step (figures only, no assertions).

Usage (from the repository root):
    python -m benchmarks.lora_rollout                          # small and base, rank 8 and 32
    python -m benchmarks.lora_rollout --scales base --ranks 32 --length 128 --batch 16

For each scale and rank it times one `focal.sampling.sample` call of --length new tokens for
--batch rollouts (EOS disabled) on base + adapters (every projection computes x W + s (x A) B)
and on merged kernels (x W'), and the merge itself (`focal.models.lora.merge_adapters`, jitted:
what merging per step adds). Merging pays when merge + merged sample < adapted sample. Wall
time and this process's CPU time (steadier when other jobs share the cores); each the fastest of
--repeats after a compile-and-warm-up call.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks.decode import _prompts  # noqa: E402
from focal.models import PAD_ID, get_scale, init_model, lora  # noqa: E402
from focal.sampling import left_pad, sample  # noqa: E402


def _fastest(fn, repeats):
  jax.block_until_ready(fn(0))
  best, best_cpu = float("inf"), float("inf")
  for seed in range(1, repeats + 1):
    start, start_cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(seed))
    best = min(best, time.perf_counter() - start)
    best_cpu = min(best_cpu, time.process_time() - start_cpu)
  return best, best_cpu


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--scales", nargs="+", default=["small", "base"])
  parser.add_argument("--ranks", nargs="+", type=int, default=[8, 32])
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--prompt-len", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  print(f"backend={jax.default_backend()} batch={args.batch} L={args.length} "
        f"prompt_len<={args.prompt_len}")
  print(f"{'scale':>6} {'rank':>5} {'adapted s':>10} {'merged s':>9} {'merge s':>8} "
        f"{'adapted CPU s':>14} {'merged+merge CPU s':>19}")
  for name in args.scales:
    config = get_scale(name, max_seq_len=args.prompt_len + args.length)
    graphdef, params = init_model(config, 0)
    tokens, mask = left_pad(_prompts(args.batch, args.prompt_len), pad_id=PAD_ID,
                            max_new_tokens=args.length, max_seq_len=config.max_seq_len)
    for rank in args.ranks:
      lgraph, base, adapters = lora.attach(lora.LoRAConfig(rank=rank), graphdef, params,
                                           jax.random.key(1))
      full = lora.combine(base, adapters)
      merge = jax.jit(lambda p: lora.merge_adapters(lgraph, p)[1])
      merged = merge(full)
      run = lambda g, p: lambda seed: sample(g, p, tokens, mask, jax.random.key(seed),
                                             max_new_tokens=args.length, eos_id=None,
                                             pad_id=PAD_ID)
      adapted, adapted_cpu = _fastest(run(lgraph, full), args.repeats)
      plain, plain_cpu = _fastest(run(graphdef, merged), args.repeats)
      merging, merging_cpu = _fastest(lambda seed: merge(full), args.repeats)
      print(f"{name:>6} {rank:>5} {adapted:>10.3f} {plain:>9.3f} {merging:>8.4f} "
            f"{adapted_cpu:>14.3f} {plain_cpu + merging_cpu:>19.3f}")


if __name__ == "__main__":
  main()
