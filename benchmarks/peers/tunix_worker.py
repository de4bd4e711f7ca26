"""Tunix's GRPOLearner (vanilla rollout engine, llama3 model) on one shape of `shapes.py`.

Runs in its own environment (docs/PERFORMANCE.md):
  python -m venv /work/venvs/tunix
  /work/venvs/tunix/bin/pip install google-tunix 'transformers<=5.12.1'
  /work/venvs/tunix/bin/python benchmarks/peers/tunix_worker.py --shape 0.11M
then reads 'run K' lines on stdin and answers each with the K iteration times (shapes.emit).
Offline: a randomly initialised tunix.models.llama3 model from a config (tied embeddings), the
local byte tokenizer. Completions run to full length because the only stop token is an id the
model cannot emit. One iteration is one global step: rollout of 8 x 8, grading, advantages, one
update (beta = 0, num_iterations = 1). The learner pulls a batch at the start of every step, so
the time between two pulls is one iteration.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shapes  # noqa: E402


def batches(warmup: int, start: float, meta: dict):
  """The learner's data: the same 8 prompts each step, with the timing and commands between."""
  # An object array: Tunix repeats prompts with np.repeat, and the Hugging Face tokenizer refuses
  # the numpy strings a plain list would become.
  prompts = np.array(shapes.prompt_texts(), dtype=object)
  for _ in range(warmup + 1):  # the learner pulls one batch ahead of its first step
    yield {"prompts": prompts}
  shapes.emit({"event": "ready", "build_s": time.perf_counter() - start, **meta})
  for todo in shapes.commands():
    times, last = [], time.perf_counter()
    for _ in range(todo):
      yield {"prompts": prompts}
      now = time.perf_counter()
      times.append(now - last)
      last = now
    shapes.emit({"event": "times", "seconds": times})


def main(argv=None):
  args = shapes.worker_args(__doc__, argv)
  start = time.perf_counter()

  import jax
  import optax
  import transformers
  from flax import nnx
  from importlib.metadata import version
  from tunix.models.llama3 import model as llama3
  from tunix.rl import rl_cluster as rl_cluster_lib
  from tunix.rl.grpo.grpo_learner import GRPOConfig, GRPOLearner
  from tunix.rl.rollout import base_rollout

  import byte_tokenizer
  shape = shapes.SHAPES[args.shape]
  mesh = jax.make_mesh((1, 1), ("fsdp", "tp"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  config = llama3.ModelConfig(num_layers=shape["n_layers"], vocab_size=shapes.VOCAB_SIZE,
                              embed_dim=shape["d_model"], hidden_dim=shape["d_ff"],
                              num_heads=shape["n_heads"], head_dim=shapes.head_dim(shape),
                              num_kv_heads=shape["n_kv_heads"], rope_theta=10000, norm_eps=1e-6,
                              weight_tying=True)
  with mesh:
    model = llama3.Llama3(config, rngs=nnx.Rngs(params=0))
  training = rl_cluster_lib.RLTrainingConfig(
      actor_optimizer=optax.chain(optax.clip_by_global_norm(shapes.GRAD_CLIP),
                                  optax.adamw(shapes.LEARNING_RATE)),
      eval_every_n_steps=10 ** 9, max_steps=10 ** 6)
  rollout = base_rollout.RolloutConfig(
      max_tokens_to_generate=shapes.COMPLETION_LEN, max_prompt_length=shapes.PROMPT_LEN,
      kv_cache_size=shapes.PROMPT_LEN + shapes.COMPLETION_LEN, temperature=1.0, top_p=1.0,
      top_k=None, eos_tokens=[shapes.VOCAB_SIZE])
  cluster = rl_cluster_lib.RLCluster(
      actor=model, tokenizer=byte_tokenizer.build(),
      cluster_config=rl_cluster_lib.ClusterConfig(
          role_to_mesh={rl_cluster_lib.Role.ACTOR: mesh, rl_cluster_lib.Role.REFERENCE: mesh,
                        rl_cluster_lib.Role.ROLLOUT: mesh},
          rollout_engine="vanilla", offload_to_cpu=False, training_config=training,
          rollout_config=rollout))
  algo = GRPOConfig(num_generations=shapes.GROUP_SIZE, num_iterations=1, beta=0.0, epsilon=0.2,
                    loss_agg_mode="sequence-mean-token-mean")

  def reward(prompts, completions, **kwargs):
    return [shapes.reward(c) for c in completions]

  learner = GRPOLearner(rl_cluster=cluster, algo_config=algo, reward_fns=[reward])
  meta = {"peer": "tunix", "shape": args.shape,
          "versions": {"google-tunix": version("google-tunix"), "jax": jax.__version__,
                       "flax": version("flax"), "transformers": transformers.__version__},
          "params": sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))}
  learner.train(batches(args.warmup, start, meta))


if __name__ == "__main__":
  main()
