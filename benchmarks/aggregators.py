"""Jitted time per `update` of every registered aggregator, at two batch shapes.

  python benchmarks/aggregators.py [--repeats 200] [--sizes 64,16,32 512,16,64]

Prints the median wall time over `repeats` calls after warm-up (each call ends
with block_until_ready) and the time per verdict, time / (B G K), in ns: a flat
figure across sizes means the cost is linear in the batch. Aggregators run with
their defaults, plus Focal with a floor and cap (which adds the capped-simplex
projection) and the stateful EMA variants.
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

from focal import aggregators  # noqa: E402
from focal.rubric import RubricBatch  # noqa: E402

EXTRA_CONFIGS = {
    "focal[w_min=0.01,w_max=0.5,ema=0.9]": ("focal", dict(w_min=0.01, w_max=0.5, ema=0.9)),
    "pow3r_focal[ema=0.9]": ("pow3r_focal", dict(ema=0.9)),
}


def make_inputs(b: int, g: int, k: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  weights = rng.choice(np.array([-2.0, -1.0, 1.0, 2.0, 3.0, 5.0]), size=(b, k))
  mask = rng.random((b, k)) < 0.85
  mask[:, 0] = True
  rubric = RubricBatch.from_arrays(weights, rng.integers(0, 5, (b, k)), rng.random((b, k)) < 0.3,
                                   mask, np.arange(b))
  scores = jnp.asarray(np.float32(rng.random((b, g, k)) < rng.random((b, 1, k))))
  valid = jnp.asarray(rng.random((b, g, k)) < 0.95)
  return scores, valid, rubric


def time_update(agg, scores, valid, rubric, repeats: int) -> float:
  """Median seconds per jitted call (state threaded through, as in training)."""
  update = jax.jit(agg.update)
  state = agg.init(rubric.num_prompts, rubric.max_criteria)
  for _ in range(5):
    out = update(scores, valid, rubric, state)
    jax.block_until_ready(out)
    state = out[1]
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = update(scores, valid, rubric, state)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
    state = out[1]
  return statistics.median(times)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=200)
  parser.add_argument("--sizes", nargs="+", default=["64,16,32", "512,16,64"],
                      help="B,G,K triples")
  args = parser.parse_args(argv)
  sizes = [tuple(int(x) for x in s.split(",")) for s in args.sizes]
  configs = {name: (name, {}) for name in aggregators.registered()}
  configs.update(EXTRA_CONFIGS)

  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
        f"median of {args.repeats} calls after warm-up")
  header = f"{'aggregator':40s}" + "".join(
      f"  {'B%d G%d K%d' % s:>14s} {'ns/verdict':>10s}" for s in sizes)
  print(header)
  inputs = [make_inputs(*s) for s in sizes]
  for label, (name, hp) in configs.items():
    agg = aggregators.make(name, **hp)
    row = f"{label:40s}"
    for (b, g, k), (scores, valid, rubric) in zip(sizes, inputs):
      seconds = time_update(agg, scores, valid, rubric, args.repeats)
      row += f"  {seconds * 1e3:11.3f} ms {seconds * 1e9 / (b * g * k):10.2f}"
    print(row, flush=True)


if __name__ == "__main__":
  main()
