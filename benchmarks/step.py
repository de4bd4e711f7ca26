"""Speed of one GRPO iteration per model scale on this machine (figures only, no assertions).

Usage (from the repository root):
    python -m benchmarks.step                       # tiny, small, base; about 5-8 min on 2 busy cores
    python -m benchmarks.step --quick               # tiny and small, fewer repeats, decode to 128
    python -m benchmarks.step --scales base --batch 12 --group 8 --new-tokens 40   # the trainer's shape

For each scale it builds the engine a run of configs/base.py at that scale and shape builds
(`components.run_engine`, benchmarks/engine_build.py) with a small jittable grader and the Focal
aggregator, jits the three halves and times (median of --repeats calls after a compile-and-warm-up
call, each ending in block_until_ready):
  * rollout_step alone  -> rollout tokens/s (EOS disabled, so every row generates --new-tokens);
  * learn_step alone    -> the GRPO update on fixed rollouts (forward+backward, AdamW);
  * train_step          -> rollout + grading + learn in one program.
It then times decode per token at response lengths 32, 128, 512 with `benchmarks.decode`.

FLOPs are counted analytically (matmuls only; norms, softmax, RoPE, AdamW are not counted):
  P = parameter count (tied embedding counted once: its gather is free and the LM head matmul costs
      2 V d per token, which equals the embedding's share of 2P), T = prompt + response tokens,
      A = n_heads * head_dim, nl = n_layers. Attention is counted over the full T x T score matrix
      because the implementation computes it all and masks (no causal halving).
  forward, per sequence          F = 2 P T + 4 nl T^2 A
  model FLOPs of one update      3 F = 6 P T + 12 nl T^2 A   (forward + backward; the MFU convention)
  learn step, executed           N [ [beta > 0] F + 3 F ]  (ref pass, update; mu = 1 with one
                                 mini-batch needs no separate old-logp pass)
  rollout (prefill + L-1 decode steps over S = T cache slots, per row)
                                 2 P Tp + 4 nl Tp S A + (L - 1) (2 P + 4 nl S A)
"GF/s" is executed FLOPs / time; "%pk" divides it by the float32 matmul GFLOP/s measured in this
process (a jitted 2048 x 2048 matmul, timed between the step timings so both see the same load from
other processes); "MFU" uses model FLOPs instead of executed ones. XLA's own count
(`compiled.cost_analysis()['flops']`, which also counts elementwise work) is printed for the learn
step as a cross-check.

The profile section (--no-profile skips it) compares one forward pass with the whole learn step at
the largest scale. (Two findings of this profile are already in the engine: 2-D matmuls in `Linear`,
whose 3-D weight gradient XLA's CPU backend computes ~1.7x slower, and no old-logp pass at mu = 1.)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.decode import _prompts, _time_sample  # noqa: E402
from benchmarks.engine_build import engine_for, model_for, run_config  # noqa: E402
from focal.batch import PromptBatch  # noqa: E402
from focal.models import PAD_ID, get_scale, init_model, param_count  # noqa: E402
from focal.rubric import RubricBatch  # noqa: E402
from focal.sampling import left_pad  # noqa: E402
from focal.update import response_logprobs  # noqa: E402

TARGET = 0.40  # learn-step share of the peak matmul rate at the largest scale (the issue's target)


def grade(features, response, mask):
  """Three jittable checks: contains the prompt's target byte, is short, starts with 'b'."""
  contains = jnp.any((response == features[:, :1]) & mask, -1)
  short = jnp.sum(mask, -1) <= features[:, 1]
  starts = response[:, 0] == ord("b")
  return jnp.stack([contains, short, starts], -1).astype(jnp.float32)


class Peak:
  """Float32 matmul GFLOP/s in this process: best of `calls` jitted n x n matmuls per sample."""

  def __init__(self, n: int = 2048, calls: int = 3):
    self.n, self.calls, self.samples = n, calls, []
    self.a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    self.f = jax.jit(lambda a, b: a @ b)
    self.f(self.a, self.a).block_until_ready()

  def sample(self) -> float:
    best = float("inf")
    for _ in range(self.calls):
      start = time.perf_counter()
      self.f(self.a, self.a).block_until_ready()
      best = min(best, time.perf_counter() - start)
    self.samples.append(2 * self.n ** 3 / best / 1e9)
    return self.samples[-1]

  def median(self, since: int = 0) -> float:
    return statistics.median(self.samples[since:])


def timed(fn, repeats: int, peak: Peak | None = None) -> float:
  """Median seconds of fn() after one warm-up call; samples the peak matmul before each call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    if peak is not None:
      peak.sample()
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def forward_flops(p: int, cfg, t: int, s: int | None = None) -> float:
  """Matmul FLOPs of one forward of t query tokens over s key slots (s = t by default)."""
  s = t if s is None else s
  return 2 * p * t + 4 * cfg.n_layers * t * s * cfg.n_heads * cfg.head_dim


def xla_flops(jitted, *args) -> float:
  try:
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))
  except Exception:  # noqa: BLE001 - a cross-check only; some backends give no analysis
    return float("nan")


def build(name: str, args):
  """(model config, graphdef, params count, engine, state, batch) of the scale `name`, built from
  configs/base.py with this benchmark's shape by the loop's own builders (engine_build)."""
  tp, length = args.prompt_len, args.new_tokens
  run = run_config(model__scale=name, aggregator__name=args.aggregator, grpo__beta=args.beta,
                   grpo__group_size=args.group, grpo__max_new_tokens=length,
                   data__prompts_per_step=args.batch)
  config = model_for(run, tp)
  b = args.batch
  built = engine_for(run, config, grade, num_prompts=b, max_criteria=3, eos_id=None,
                     pad_id=PAD_ID)
  tokens, mask = left_pad(_prompts(b, tp), pad_id=PAD_ID, width=tp)
  features = np.stack([97 + np.arange(b) % 26, np.full(b, length // 2)], -1).astype(np.int32)
  rubric = RubricBatch.from_lists(
      [[{"weight": 3, "category": 0, "required": True}, {"weight": 1, "category": 1},
        {"weight": -1, "category": 1}]] * b)
  batch = PromptBatch(jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(features), rubric)
  return config, built.graphdef, param_count(built.state.params), built.engine, built.state, batch


def rollout_inputs(rollout, state, batch, group):
  _, rollouts = rollout(state, batch)
  scores = grade(jnp.repeat(batch.features, group, axis=0), rollouts.tokens, rollouts.mask)
  return rollouts, scores, jnp.ones(scores.shape, bool)


def bench_scale(name, args, peak):
  since = len(peak.samples)
  config, graphdef, p, engine, state, batch = build(name, args)
  n, tp, length = args.batch * args.group, args.prompt_len, args.new_tokens
  t = tp + length
  rollout, learn, train = (jax.jit(f) for f in engine)
  rollouts, scores, valid = rollout_inputs(rollout, state, batch, args.group)

  r_s = timed(lambda: rollout(state, batch), args.repeats, peak)
  l_s = timed(lambda: learn(state, batch, rollouts, scores, valid), args.repeats, peak)
  t_s = timed(lambda: train(state, batch), args.repeats, peak)

  fwd = forward_flops(p, config, t)
  # mu = 1 with one mini-batch reuses the loss's own forward as the old policy:
  # only the reference pass (beta > 0) runs besides forward + backward.
  learn_exec = n * ((args.beta > 0) * fwd + 3 * fwd)
  learn_model = n * 3 * fwd
  roll = n * (forward_flops(p, config, tp, t) + (length - 1) * forward_flops(p, config, 1, t))
  return dict(name=name, params=p, n=n, t=t, peak=peak.median(since),
              rollout_s=r_s, learn_s=l_s, train_s=t_s, rollout_tok_s=n * length / r_s,
              rollout_flops=roll, learn_exec=learn_exec, learn_model=learn_model,
              learn_xla=xla_flops(learn, state, batch, rollouts, scores, valid),
              config=config, graphdef=graphdef, engine=engine, state=state, batch=batch,
              rollouts=rollouts, scores=scores, valid=valid)


def profile(res, args, peak):
  """Where the learn step's time goes at one scale: one forward pass against the whole update."""
  since = len(peak.samples)
  cfg, gd, state, batch, rollouts = (res[k] for k in ("config", "graphdef", "state", "batch",
                                                      "rollouts"))
  g = args.group
  pt, pm = jnp.repeat(batch.tokens, g, 0), jnp.repeat(batch.mask, g, 0)
  forward = jax.jit(lambda params: response_logprobs(gd, params, pt, pm, rollouts))
  f_s = timed(lambda: forward(state.params), args.repeats, peak)
  fwd = res["n"] * forward_flops(res["params"], cfg, res["t"])
  print(f"\nprofile ({res['name']}, N={res['n']} sequences x T={res['t']} tokens; "
        f"load {os.getloadavg()[0]:.1f}):")
  print(f"  learn step                              {res['learn_s']:8.3f} s")
  print(f"  one forward pass over the rollouts      {f_s:8.3f} s  = "
        f"{fwd / f_s / 1e9:6.1f} GF/s ({100 * fwd / f_s / 1e9 / peak.median(since):.0f}% of peak)")
  print(f"  the update costs {res['learn_s'] / f_s:.1f} forward passes (forward + backward + AdamW "
        f"{'+ reference pass ' if args.beta > 0 else ''}; ideal ~3)")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--scales", nargs="+", default=["tiny", "small", "base"])
  parser.add_argument("--batch", type=int, default=4, help="prompts per step (B)")
  parser.add_argument("--group", type=int, default=8, help="rollouts per prompt (G)")
  parser.add_argument("--prompt-len", type=int, default=32, help="padded prompt width")
  parser.add_argument("--new-tokens", type=int, default=32, help="response length of the step")
  parser.add_argument("--beta", type=float, default=0.0, help="KL weight (> 0 adds a ref pass)")
  parser.add_argument("--aggregator", default="focal")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--decode-lengths", nargs="*", type=int, default=[32, 128, 512])
  parser.add_argument("--decode-batch", type=int, default=16)
  parser.add_argument("--no-profile", action="store_true", help="skip the learn-step profile")
  parser.add_argument("--quick", action="store_true",
                      help="tiny and small only, 2 repeats, decode lengths 32 128, no profile")
  args = parser.parse_args(argv)
  if args.quick:
    args.scales = [s for s in args.scales if s != "base"] or args.scales
    args.repeats, args.decode_lengths, args.no_profile = 2, [32, 128], True

  start = time.perf_counter()
  peak = Peak()
  peak.sample()
  print(f"jax {jax.__version__} backend={jax.default_backend()} cpus={os.cpu_count()} "
        f"load={tuple(round(x, 1) for x in os.getloadavg())}")
  print(f"step: B={args.batch} G={args.group} -> N={args.batch * args.group} rollouts, "
        f"prompt {args.prompt_len} + response {args.new_tokens} tokens, beta={args.beta}, "
        f"mu=1, aggregator={args.aggregator}; median of {args.repeats} after warm-up")
  print(f"peak float32 matmul (2048^3, this process, at start): {peak.samples[0]:.1f} GFLOP/s")

  results = []
  for name in args.scales:
    results.append(bench_scale(name, args, peak))
    r = results[-1]
    print(f"  {name}: done in {time.perf_counter() - start:.0f} s "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)

  print("\nthroughput (GF/s = executed analytic FLOPs / s; %pk = / peak matmul GF/s measured "
        "alongside)")
  print(f"{'scale':>6} {'params':>10} {'peak':>6} | {'rollout s':>9} {'tok/s':>7} {'GF/s':>6} "
        f"{'%pk':>4} | {'learn s':>8} {'GF/s':>6} {'%pk':>4} {'MFU':>4} {'XLA GF':>7} "
        f"{'an. GF':>7} | {'train s':>8} {'GF/s':>6} {'%pk':>4}")
  for r in results:
    pk = r["peak"]
    rg = r["rollout_flops"] / r["rollout_s"] / 1e9
    lg = r["learn_exec"] / r["learn_s"] / 1e9
    mfu = r["learn_model"] / r["learn_s"] / 1e9 / pk
    tg = (r["rollout_flops"] + r["learn_exec"]) / r["train_s"] / 1e9
    print(f"{r['name']:>6} {r['params']:>10,} {pk:>6.1f} | {r['rollout_s']:>9.3f} "
          f"{r['rollout_tok_s']:>7,.0f} {rg:>6.1f} {100 * rg / pk:>3.0f}% | {r['learn_s']:>8.3f} "
          f"{lg:>6.1f} {100 * lg / pk:>3.0f}% {100 * mfu:>3.0f}% {r['learn_xla'] / 1e9:>7.1f} "
          f"{r['learn_exec'] / 1e9:>7.1f} | {r['train_s']:>8.3f} {tg:>6.1f} {100 * tg / pk:>3.0f}%")

  if args.decode_lengths:
    lengths = args.decode_lengths
    print(f"\ndecode ms/token (batch {args.decode_batch}, prompt <= {args.prompt_len}, "
          "prefill removed: (time(L) - time(1)) / (L - 1))")
    print(f"{'scale':>6} " + " ".join(f"{'L=%d' % n:>9}" for n in lengths)
          + f" {'max/min':>8}")
    for name in args.scales:
      config = get_scale(name)
      graphdef, state = init_model(config, 0)
      tokens, mask = left_pad(_prompts(args.decode_batch, args.prompt_len), pad_id=PAD_ID,
                              max_new_tokens=max(lengths), max_seq_len=config.max_seq_len)
      prefill = _time_sample(graphdef, state, tokens, mask, 1, args.repeats)
      per = [1e3 * (_time_sample(graphdef, state, tokens, mask, n, args.repeats) - prefill)
             / max(n - 1, 1) for n in lengths]
      print(f"{name:>6} " + " ".join(f"{x:>9.3f}" for x in per)
            + f" {max(per) / min(per):>8.2f}", flush=True)

  largest = results[-1]
  if not args.no_profile:
    profile(largest, args, peak)

  lg = largest["learn_exec"] / largest["learn_s"] / 1e9
  ratio = lg / largest["peak"]
  mfu = largest["learn_model"] / largest["learn_s"] / 1e9 / largest["peak"]
  verdict = "MEETS" if ratio >= TARGET else "MISSES"
  print(f"\nverdict: {largest['name']} learn step {lg:.1f} GF/s = {100 * ratio:.0f}% of the "
        f"in-process peak {largest['peak']:.1f} GF/s (MFU {100 * mfu:.0f}%) -> {verdict} the "
        f"{100 * TARGET:.0f}% target   [total {time.perf_counter() - start:.0f} s, "
        f"load {os.getloadavg()[0]:.1f}]")


if __name__ == "__main__":
  main()
