"""Decode speed of `focal.sampling.sample` per model scale (figures only, no assertions).

Usage (from the repository root):
    python -m benchmarks.decode                    # all scales, lengths 32 128 512 2048
    python -m benchmarks.decode --scales tiny --lengths 32 128 --batch 8
    python -m benchmarks.decode --group 8          # 16 rollouts = 2 prompts x 8 (GRPO groups)

For each scale and response length L it times a full `sample` call (prefill + L decode steps, EOS
disabled so every row runs to L) and reports
  * decode ms/token: (time(L) - time(1)) / (L - 1), i.e. one decode step for the whole batch with
    the prefill removed, in wall time and in this process's CPU time (all threads; steadier than
    wall time when other jobs share the cores). The cache makes a step cost O(params + filled
    slots) instead of the O(params x prefix) of recomputing the prefix, and the decode runs in
    buckets (focal.decode_plan.decode_buckets) so a step attends over the filled part of the cache
    rounded up to a power of two, not over all prompt + L slots. What still grows with L is
    attention itself: at L = 2048 a step reads ~1000 filled slots per layer, which at the wider
    scales costs as much as the weights. The last line gives max/min over L (target: within
    1.5x);
  * rollout tokens/s: batch * L / time(L), prefill included (what GRPO rollouts see).
With --group G the batch is batch / G prompts sampled G times each (their prompt's cache shared).
Timings take the fastest of --repeats runs after one compile-and-warm-up run (the least
disturbed by other jobs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from focal.models import BOS_ID, PAD_ID, get_scale, init_model, param_count  # noqa: E402
from focal.sampling import left_pad, sample  # noqa: E402


def _time_sample(graphdef, state, tokens, mask, length, repeats, group=1, cpu=False):
  """Wall time (s; with cpu, also process CPU s) of one sample() call of `length` new tokens:
  the median of `repeats` calls after a warm-up call (with cpu: the fastest of each)."""
  def run(seed):
    out = sample(graphdef, state, tokens, mask, jax.random.key(seed), max_new_tokens=length,
                 temperature=1.0, eos_id=None, pad_id=PAD_ID, group_size=group)
    jax.block_until_ready(out)
  run(0)
  times, cpus = [], []
  for seed in range(1, repeats + 1):
    start, start_cpu = time.perf_counter(), time.process_time()
    run(seed)
    times.append(time.perf_counter() - start)
    cpus.append(time.process_time() - start_cpu)
  if cpu:
    return min(times), min(cpus)
  return statistics.median(times)


def _prompts(batch, prompt_len, seed=0):
  """Byte prompts of varied lengths (up to prompt_len) so left padding is exercised."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(prompt_len // 2, prompt_len + 1, size=batch)
  return [[BOS_ID] + rng.integers(0, 256, size=n - 1).tolist() for n in lengths]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--scales", nargs="+", default=["tiny", "small", "base"])
  parser.add_argument("--lengths", nargs="+", type=int, default=[32, 128, 512, 2048])
  parser.add_argument("--batch", type=int, default=16, help="rollouts decoded together")
  parser.add_argument("--prompt-len", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--group", type=int, default=1, help="rollouts per prompt (divides batch)")
  args = parser.parse_args(argv)

  print(f"backend={jax.default_backend()} devices={jax.device_count()} batch={args.batch} "
        f"group={args.group} prompt_len<={args.prompt_len} dtype={args.dtype}")
  print(f"{'scale':>6} {'params':>9} {'L':>5} {'total s':>8} {'decode ms/tok':>14} "
        f"{'CPU ms/tok':>11} {'rollout tok/s':>14}")
  for name in args.scales:
    # The context must hold the longest prompt + response.
    config = get_scale(name, dtype=args.dtype, max_seq_len=args.prompt_len + max(args.lengths))
    graphdef, state = init_model(config, 0)
    tokens, mask = left_pad(_prompts(args.batch // args.group, args.prompt_len), pad_id=PAD_ID,
                            max_new_tokens=max(args.lengths), max_seq_len=config.max_seq_len)
    timed = lambda n: _time_sample(graphdef, state, tokens, mask, n, args.repeats, args.group,
                                   cpu=True)
    prefill, prefill_cpu = timed(1)
    per_token = []
    for length in args.lengths:
      total, total_cpu = timed(length)
      per_token.append(1e3 * (total - prefill) / max(length - 1, 1))
      cpu = 1e3 * (total_cpu - prefill_cpu) / max(length - 1, 1)
      print(f"{name:>6} {param_count(state):>9,} {length:>5} {total:>8.3f} "
            f"{per_token[-1]:>14.3f} {cpu:>11.3f} {args.batch * length / total:>14,.0f}",
            flush=True)
    ratio = max(per_token) / min(per_token)
    print(f"{name:>6} decode ms/token max/min over L = {ratio:.2f} (target <= 1.5: "
          f"{'MEETS' if ratio <= 1.5 else 'MISSES'}); load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
  main()
