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


def run_config(aggregator: str = "weighted_sum", num_prompts: int = shapes.NUM_PROMPTS,
               seed: int = 0, dtype: str = "float32"):
  """configs/base.py with the shared settings of shapes.py: the run whose step is timed."""
  from benchmarks.engine_build import run_config as base_config
  return base_config(seed=seed, aggregator__name=aggregator, model__dtype=dtype,
                     data__prompts_per_step=num_prompts, grpo__group_size=shapes.GROUP_SIZE,
                     grpo__max_new_tokens=shapes.COMPLETION_LEN, grpo__beta=0.0, grpo__mu=1,
                     grpo__num_minibatches=1, optimizer__learning_rate=shapes.LEARNING_RATE,
                     optimizer__grad_clip=shapes.GRAD_CLIP)


def build(shape_name: str, dtype: str = "float32", aggregator: str = "weighted_sum",
          num_prompts: int = shapes.NUM_PROMPTS, seed: int = 0):
  """(model config, engine, initial TrainState, PromptBatch) for one shape, built from
  `run_config` by the loop's own builders (benchmarks/engine_build.py)."""
  import jax.numpy as jnp

  from benchmarks.engine_build import engine_for
  from focal.batch import PromptBatch
  config = model_config(shape_name, dtype)
  built = engine_for(run_config(aggregator, num_prompts, seed, dtype), config, grade,
                     num_prompts=num_prompts, max_criteria=1, eos_id=None, pad_id=shapes.PAD_ID)
  tokens, mask, features, rubric = host_batch(num_prompts)
  batch = PromptBatch(jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(features), rubric)
  return config, built.engine, built.state, batch


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
