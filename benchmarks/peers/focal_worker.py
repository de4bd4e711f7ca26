"""Focal's jitted `train_step` on one shape of `shapes.py`, timed per iteration for `vs_peers.py`.

  python benchmarks/peers/focal_worker.py --shape 0.11M [--dtype bfloat16]
then reads 'run K' lines on stdin and answers each with the K iteration times (shapes.emit).
One iteration is what a training loop pays per step: place the prompt batch (host numpy) on the
device, one `train_step` (rollout of 8 x 8 with EOS disabled, the one-criterion grader, the
`weighted_sum` aggregator, GRPO advantages, one update), and read the metrics back to the host.
`build` is also what `benchmarks/iteration.py` measures.
"""
from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shapes  # noqa: E402


def grade(features, response, mask):
  """[N, 1]: the response holds the prompt's target byte (features[:, 0])."""
  import jax.numpy as jnp
  hit = jnp.any((response == features[:, :1]) & mask, axis=-1, keepdims=True)
  return hit.astype(jnp.float32)


def model_config(shape_name: str, dtype: str = "float32"):
  from focal.models.transformer import ModelConfig
  shape = shapes.SHAPES[shape_name]
  return ModelConfig(vocab_size=shapes.VOCAB_SIZE, head_dim=shapes.head_dim(shape), dtype=dtype,
                     max_seq_len=shapes.PROMPT_LEN + shapes.COMPLETION_LEN, **shape)


def host_batch(num_prompts: int = shapes.NUM_PROMPTS):
  """The prompts as a trainer's data pipeline hands them over: numpy arrays and a rubric."""
  import numpy as np

  from focal.rubric import RubricBatch
  texts = (shapes.prompt_texts() * num_prompts)[:num_prompts]
  tokens = np.array([list(t.encode()) for t in texts], np.int32)
  features = np.full((num_prompts, 1), ord(shapes.TARGET_BYTE), np.int32)
  rubric = RubricBatch.from_lists([[{"weight": 1.0, "category": 0}]] * num_prompts,
                                  prompt_ids=list(range(num_prompts)))
  return tokens, np.ones(tokens.shape, bool), features, rubric


def build(shape_name: str, dtype: str = "float32", aggregator: str = "weighted_sum",
          num_prompts: int = shapes.NUM_PROMPTS, seed: int = 0):
  """(config, engine, initial TrainState, PromptBatch) for one shape."""
  import jax
  import jax.numpy as jnp

  from focal import aggregators
  from focal.models.transformer import init_model
  from focal.batch import PromptBatch
  from focal.iteration import (GRPOSettings, init_train_state, make_engine, make_optimizer)
  config = model_config(shape_name, dtype)
  graphdef, params = init_model(config, jax.random.key(seed))
  tx = make_optimizer(shapes.LEARNING_RATE, shapes.GRAD_CLIP)
  agg = aggregators.make(aggregator)
  settings = GRPOSettings(group_size=shapes.GROUP_SIZE, max_new_tokens=shapes.COMPLETION_LEN,
                          eos_id=None, pad_id=shapes.PAD_ID, beta=0.0, mu=1, num_minibatches=1)
  engine = make_engine(graphdef, tx, agg, settings, grader=grade)
  state = init_train_state(params, tx, agg, num_prompts=num_prompts, max_criteria=1,
                           rng=jax.random.key(seed + 1))
  tokens, mask, features, rubric = host_batch(num_prompts)
  batch = PromptBatch(jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(features), rubric)
  return config, engine, state, batch


def main(argv=None):
  args = shapes.worker_args(__doc__, argv, dtypes=True)
  start = time.perf_counter()

  import flax
  import jax
  import optax

  from focal.models import param_count
  from focal.batch import PromptBatch
  _, engine, state, _ = build(args.shape, args.dtype)
  step = jax.jit(engine.train_step, donate_argnums=(0,))
  tokens, mask, features, rubric = host_batch()

  def iteration(state):
    batch = PromptBatch(jax.device_put(tokens), jax.device_put(mask), jax.device_put(features),
                        rubric)
    state, metrics = step(state, batch)
    jax.device_get((metrics["loss"], metrics["reward_mean"]))
    return state

  for _ in range(args.warmup):
    state = iteration(state)
  shapes.emit({"event": "ready", "build_s": time.perf_counter() - start, "peer": "focal",
               "shape": args.shape, "params": param_count(state.params),
               "versions": {"jax": jax.__version__, "flax": flax.__version__,
                            "optax": optax.__version__}})
  for todo in shapes.commands():
    times = []
    for _ in range(todo):
      t0 = time.perf_counter()
      state = iteration(state)
      times.append(time.perf_counter() - t0)
    shapes.emit({"event": "times", "seconds": times})


if __name__ == "__main__":
  main()
