"""One Focal GRPO iteration, taken apart: FLOP utilisation, phases, aggregators, seeds, bfloat16.

  python -m benchmarks.iteration                                   # every section, all shapes
  python -m benchmarks.iteration --sections util --shapes 23.7M
  python -m benchmarks.iteration --sections aggregators seeds bf16 --repeats 5

Sections (figures only; the targets of the performance issue are printed next to them):
  util         per vs_peers shape (benchmarks/peers/shapes.py): the jitted train_step's time, its
               executed matmul FLOPs / time as a share of the float32 matmul peak measured in this
               process (target >= 75% at 23.7M), and its phases timed as separate jitted calls:
               rollout, grading, aggregation, advantages, update (= learn_step minus the two
               before it).
  aggregators  every registered aggregator's jitted update at the trainer's default shape
               (configs/base.py: the suite's rubrics, B=12 prompts, G=8, tiny model, 40 new
               tokens) as a share of that shape's train_step (target <= 1% each).
  seeds        N seeds as one jitted vmap(train_step) against N jitted train_step calls, at 0.11M
               (target >= 1.5x the throughput).
  bf16         train_step per shape in bfloat16 compute against float32.
FLOPs are counted analytically as executed (matmuls only): the rollout prefills each prompt once
and decodes over the bucketed cache (focal.decode_plan.decode_buckets); the update runs the prompt
once per group and the responses over its repeated cache, forward + backward = 3 forwards.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "peers"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import focal_worker  # noqa: E402
import shapes  # noqa: E402
from benchmarks.engine_build import run_config  # noqa: E402
from benchmarks.step import Peak, timed  # noqa: E402
from focal import aggregators, components  # noqa: E402
from focal.advantages import make_estimator  # noqa: E402
from focal.decode_plan import decode_buckets  # noqa: E402


def forward_flops(cfg, rows: int, queries: int, slots: int) -> float:
  """Matmul FLOPs of `rows` sequences of `queries` tokens attending over `slots` keys."""
  per_token = cfg.n_layers * 2 * cfg.d_model * (cfg.head_dim * (2 * cfg.n_heads + 2 *
                                                                cfg.n_kv_heads) + 3 * cfg.d_ff)
  per_token += 2 * cfg.d_model * cfg.vocab_size  # the LM head
  attention = 4 * cfg.n_layers * slots * cfg.n_heads * cfg.head_dim
  return rows * queries * (per_token + attention)


def iteration_flops(cfg, b: int, g: int, p: int, length: int) -> tuple[float, float]:
  """(rollout, update) FLOPs of one iteration as Focal executes it."""
  n = b * g
  buckets = decode_buckets(length)
  rollout = forward_flops(cfg, b, p, p + buckets[0])
  for step in range(1, length):
    size = next(s for s in buckets if step <= s or s == length)
    rollout += forward_flops(cfg, n, 1, p + size)
  slots = p + length - 1
  update = 3 * (forward_flops(cfg, b, p, slots) + forward_flops(cfg, n, length - 1, slots))
  return rollout, update


def phase_times(config, engine, state, batch, repeats: int, peak: Peak) -> dict:
  """Seconds of the fused step and of each phase as its own jitted call; the aggregator and
  the advantage estimator are the ones `config`'s run builds."""
  g = config.grpo.group_size
  rollout, learn, train = (jax.jit(f) for f in engine)
  grade = jax.jit(focal_worker.grade)
  update = jax.jit(components.make_aggregator(config).update)
  name, hparams = components.estimator_spec(config)
  estimate = jax.jit(make_estimator(name, **hparams))
  _, rollouts = rollout(state, batch)
  features = jnp.repeat(batch.features, g, axis=0)
  scores = grade(features, rollouts.tokens, rollouts.mask)
  valid = jnp.ones(scores.shape, bool)
  b = batch.tokens.shape[0]
  s3, v3 = scores.reshape(b, g, -1), valid.reshape(b, g, -1)
  rewards = update(s3, v3, batch.rubric, state.agg_state)[0]
  out = {"train_step": timed(lambda: train(state, batch), repeats, peak),
         "rollout": timed(lambda: rollout(state, batch), repeats, peak),
         "grading": timed(lambda: grade(features, rollouts.tokens, rollouts.mask), repeats),
         "aggregation": timed(lambda: update(s3, v3, batch.rubric, state.agg_state), repeats),
         "advantages": timed(lambda: estimate(rewards, s3, v3, batch.rubric), repeats)}
  learn_s = timed(lambda: learn(state, batch, rollouts, scores, valid), repeats, peak)
  out["update"] = learn_s - out["aggregation"] - out["advantages"]
  return out


def section_util(args, peak: Peak):
  print("\n## FLOP utilisation and phases (float32; phases as separate jitted calls)")
  print(f"{'shape':>6} {'step s':>8} {'GFLOP':>7} {'GF/s':>6} {'peak':>6} {'util':>5} | "
        f"{'rollout':>8} {'grading':>8} {'aggreg.':>8} {'advant.':>8} {'update':>8}")
  for name in args.shapes:
    since = len(peak.samples)
    cfg, engine, state, batch = focal_worker.build(name)
    t = phase_times(focal_worker.run_config(), engine, state, batch, args.repeats, peak)
    flops = sum(iteration_flops(cfg, shapes.NUM_PROMPTS, shapes.GROUP_SIZE, shapes.PROMPT_LEN,
                                shapes.COMPLETION_LEN))
    rate = flops / t["train_step"] / 1e9
    pk = peak.median(since)
    parts = ("rollout", "grading", "aggregation", "advantages", "update")
    total = sum(t[k] for k in parts)
    print(f"{name:>6} {t['train_step']:>8.3f} {flops / 1e9:>7.1f} {rate:>6.1f} {pk:>6.1f} "
          f"{100 * rate / pk:>4.0f}% | " + " ".join(f"{100 * t[k] / total:>7.1f}%" for k in parts)
          + f"   (load {os.getloadavg()[0]:.1f})", flush=True)
  print("target: whole-iteration utilisation >= 75% of the in-process peak at 23.7M")


def default_setup(aggregator: str):
  """The trainer's default run (configs/base.py) as `components.build` makes it, with its random
  tiny model (no warm start), EOS on, and its first batch."""
  c = run_config(aggregator__name=aggregator, warm_start__steps=0, warm_start__cache_dir="")
  setup = components.build(c, progress=False)
  batch = jax.tree.map(jnp.asarray, setup.source.batch(0)[0])
  return setup.engine, components.make_aggregator(c), setup.state, batch, setup


def section_aggregators(args):
  print("\n## Aggregators at the trainer's default shape (configs/base.py)")
  engine, _, state, batch, setup = default_setup("focal")
  train = jax.jit(engine.train_step)
  step_s = timed(lambda: train(state, batch), args.repeats)
  b, g, k = batch.tokens.shape[0], setup.settings.group_size, setup.source.max_criteria
  rng = np.random.default_rng(0)
  scores = jnp.asarray(np.float32(rng.random((b, g, k)) < 0.5))
  valid = jnp.ones((b, g, k), bool)
  print(f"train_step (focal aggregator, B={b} G={g} K={k}): {1e3 * step_s:.1f} ms")
  print(f"{'aggregator':>18} {'update ms':>10} {'share':>7}")
  worst = 0.0
  for name in aggregators.registered():
    _, agg, state, _, _ = default_setup(name)
    update = jax.jit(agg.update)
    seconds = timed(lambda: update(scores, valid, batch.rubric, state.agg_state), 50)
    worst = max(worst, seconds / step_s)
    print(f"{name:>18} {1e3 * seconds:>10.3f} {100 * seconds / step_s:>6.2f}%", flush=True)
  print(f"target: every aggregator <= 1% of an iteration -> "
        f"{'MEETS' if worst <= 0.01 else 'MISSES'} (largest {100 * worst:.2f}%)")


def section_seeds(args):
  print("\n## Seeds: one vmapped train_step against one call per seed (0.11M)")
  n = args.seeds
  builds = [focal_worker.build("0.11M", seed=s) for s in range(n)]
  engine, batch = builds[0][1], builds[0][3]
  states = [b[2] for b in builds]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)
  batches = jax.tree.map(lambda x: jnp.stack([x] * n), batch)
  one = jax.jit(engine.train_step)
  many = jax.jit(jax.vmap(engine.train_step))
  seq = timed(lambda: [one(s, batch) for s in states], args.repeats)
  vm = timed(lambda: many(stacked, batches), args.repeats)
  print(f"N={n}: sequential {seq:.3f} s, vmapped {vm:.3f} s -> {seq / vm:.2f}x the throughput "
        f"(target >= 1.5x: {'MEETS' if seq / vm >= 1.5 else 'MISSES'})")


def section_bf16(args):
  print("\n## bfloat16 compute against float32 (train_step s)")
  for name in args.shapes:
    row = {}
    for dtype in ("float32", "bfloat16"):
      _, engine, state, batch = focal_worker.build(name, dtype)
      train = jax.jit(engine.train_step)
      row[dtype] = timed(lambda: train(state, batch), args.repeats)
    print(f"{name:>6}: float32 {row['float32']:.3f} s, bfloat16 {row['bfloat16']:.3f} s "
          f"({row['float32'] / row['bfloat16']:.2f}x)", flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sections", nargs="+", default=["util", "aggregators", "seeds", "bf16"],
                      choices=["util", "aggregators", "seeds", "bf16"])
  parser.add_argument("--shapes", nargs="+", default=list(shapes.SHAPES),
                      choices=list(shapes.SHAPES))
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--seeds", type=int, default=4, help="N for the seeds section")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  peak = Peak()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, load "
        f"{tuple(round(x, 1) for x in os.getloadavg())}; median of {args.repeats} calls after "
        f"warm-up; peak float32 matmul (2048^3) at start {peak.sample():.1f} GFLOP/s")
  for section in args.sections:
    {"util": lambda: section_util(args, peak), "aggregators": lambda: section_aggregators(args),
     "seeds": lambda: section_seeds(args), "bf16": lambda: section_bf16(args)}[section]()
  print(f"\ntotal {time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
