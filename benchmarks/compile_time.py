"""Compile time of a Qwen3-4B-shaped learn step on this CPU, by depth (figures only).

    python -m benchmarks.compile_time                      # 4 and 36 layers, remat none and block
    python -m benchmarks.compile_time --layers 36 --remat block --attention xla

The program is what the learn step differentiates: value_and_grad of a token-weighted sum of
`grouped_response_logprobs` (the prompt once per group, the responses over its shared cache,
log-probs and entropy through the LM head in chunks) with respect to every parameter, for
Qwen3-4B's shapes (vocabulary 151,936, width 2,560, 32 query / 8 key-value heads of 128, MLP
9,728, q/k norms, tied head), bfloat16 compute and float32 parameters. Inputs are abstract
(ShapeDtypeStructs), so nothing of the model's 4B parameters is allocated; the figure is
`jax.jit(...).lower(...)` (tracing) plus `.compile()` (XLA), in seconds, with the process's peak
resident memory. The layers are one scanned block, so the time should not grow with depth.
Target (issue 32): a 36-layer step compiles in under 60 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from focal.models.transformer import (ModelConfig, abstract_model,  # noqa: E402
                                      grouped_response_logprobs)

QWEN3_4B = ModelConfig(vocab_size=151936, d_model=2560, n_layers=36, n_heads=32, n_kv_heads=8,
                       head_dim=128, d_ff=9728, rope_theta=1e6, tie_embeddings=True, qk_norm=True,
                       dtype="bfloat16", max_seq_len=40960)
TARGET_S = 60.0


def learn_step(graphdef, group: int):
  """The differentiated part of a learn step: (loss, grads) of an advantage-weighted sum."""
  def loss(params, prompts, prompt_mask, responses, response_mask, adv):
    logp, entropy = grouped_response_logprobs(graphdef, params, prompts, prompt_mask, responses,
                                              response_mask, group, with_entropy=True)
    weight = response_mask * adv[:, None]
    return jnp.sum(logp * weight) / jnp.sum(response_mask), jnp.mean(entropy)

  return jax.jit(jax.value_and_grad(loss, has_aux=True))


def measure(config: ModelConfig, batch: int, group: int, prompt: int, new: int):
  """(lower s, compile s, process CPU s of both) of the learn step of `config` on abstract
  inputs."""
  graphdef, params = abstract_model(config)
  n = batch * group
  args = (params, jax.ShapeDtypeStruct((batch, prompt), jnp.int32),
          jax.ShapeDtypeStruct((batch, prompt), bool), jax.ShapeDtypeStruct((n, new), jnp.int32),
          jax.ShapeDtypeStruct((n, new), bool), jax.ShapeDtypeStruct((n,), jnp.float32))
  start, cpu = time.perf_counter(), time.process_time()
  lowered = learn_step(graphdef, group).lower(*args)
  traced = time.perf_counter() - start
  start = time.perf_counter()
  lowered.compile()
  return traced, time.perf_counter() - start, time.process_time() - cpu


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layers", nargs="+", type=int, default=[4, 36])
  parser.add_argument("--remat", nargs="+", default=["none", "block"])
  parser.add_argument("--attention", default="auto")
  parser.add_argument("--batch", type=int, default=2, help="prompts")
  parser.add_argument("--group", type=int, default=2, help="responses per prompt")
  parser.add_argument("--prompt", type=int, default=64, help="prompt tokens")
  parser.add_argument("--new", type=int, default=64, help="response tokens")
  args = parser.parse_args(argv)
  print(f"jax {jax.__version__} backend={jax.default_backend()} cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f}; Qwen3-4B shapes, bf16 compute, "
        f"{args.batch} prompts x {args.group} responses, {args.prompt} + {args.new} tokens")
  worst = 0.0
  for remat in args.remat:
    for layers in args.layers:
      # Older checkouts (for before/after runs) have no remat or attention fields.
      known = {f.name for f in dataclasses.fields(ModelConfig)}
      extra = {k: v for k, v in (("remat", remat), ("attention", args.attention)) if k in known}
      config = dataclasses.replace(QWEN3_4B, n_layers=layers, **extra)
      traced, compiled, cpu = measure(config, args.batch, args.group, args.prompt, args.new)
      peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
      print(f"layers {layers:3d} remat {extra.get('remat', 'n/a'):5s}: trace {traced:6.1f} s + "
            f"compile {compiled:6.1f} s = {traced + compiled:6.1f} s wall, {cpu:6.1f} s CPU "
            f"(peak RSS so far {peak:.2f} GiB, load {os.getloadavg()[0]:.1f})", flush=True)
      if layers == 36:
        worst = max(worst, traced + compiled)
  if worst:
    print(f"36 layers: {worst:.1f} s at most (target < {TARGET_S:.0f} s: "
          f"{'MEETS' if worst < TARGET_S else 'MISSES'})")


if __name__ == "__main__":
  main()
