r"""Focal Reward (arXiv 2605.26579) on RaR-Medicine with a pretrained policy and an LLM judge.

The Focal paper's text was not available (METHODS §4: its aggregator is a documented
reconstruction); its comparison is Focal against the best static aggregation on rubric
benchmarks, with per-criterion LLM judging. This preset trains a local Hugging Face checkpoint
on a RaR file with the reconstruction's defaults plus the weight floor, and the POW3R paper's
GRPO settings (G=16, KL 0.1, clip 0.2, grad-norm clip 0.5) for comparability:

  export OPENAI_API_KEY=...
  python -m experiments.sweep --config=configs/paper/focal_rar.py \
      --config.model.checkpoint=/ckpts/Qwen2.5-7B-Instruct \
      --config.data.path=/data/rar/RaR-Medicine-20k.jsonl \
      --config.grader.judge.base_url=http://judge-host:8000/v1 \
      --config.grader.judge.model=Qwen/Qwen3-32B \
      --config.mesh.shape='(1,8,1)' --workdir=runs/focal_rar

Slice: not planned here (no Qwen2.5-7B config.json is shipped); its shapes (1024-token prompts)
are smaller than pow3r_healthbench's at the same memory settings, which fit Qwen3-8B on a
v5p-16 (docs/SCALING.md). experiments.plan with the checkpoint's directory says for certain.

What to expect (the paper's claim; not run here): Focal above the strongest static aggregation
(weighted sum, category-balanced) on held-out mean rubric reward. On this repository's
synthetic grid it is not (docs/RESULTS.md §4: 4 wins of 18, none clear of seed noise), and in
the rubric simulator it loses to weighted sum everywhere (docs/SIMULATOR.md); this is the run
that can settle it. The learning rate is a common choice, not the paper's.
"""
import itertools

from configs import base


def get_config(arg=None):
  """`arg`: None (the recipe) or 'smoke' (the same wiring, shrunk; for tests)."""
  if arg not in (None, "smoke"):
    raise ValueError(f"unknown variant {arg!r}; choose None or 'smoke'")
  c = base.get_config("tiny" if arg == "smoke" else None)
  c.model.dtype = "bfloat16"  # compute; parameters stay float32 (model.param_dtype)
  c.model.remat = "block"  # keep each layer's input only (as pow3r_healthbench, whose plan fits)
  c.data.source = "rar"
  c.data.eval_fraction = 0.05  # held out by a hash of each question (or give data.eval_path)
  c.data.max_eval_prompts = 500
  c.data.max_prompt_tokens = 1024
  c.data.prompts_per_step = 32
  c.warm_start.steps = 0
  c.grader.kind = "judge"
  c.grader.judge.template = "pow3r"  # pitfalls asked as avoidance under pitfall_mode=flip
  c.grader.judge.temperature = 1.0
  c.grader.judge.max_tokens = 2048
  c.grader.judge.max_concurrency = 64
  c.grader.judge.cache_path = "~/.cache/focal/verdicts/focal_rar.sqlite"
  c.aggregator.name = "focal"
  c.aggregator.focal.w_min = 0.05  # the floor (K <= 20 criteria per RaR prompt)
  c.grpo.group_size = 16
  c.grpo.max_new_tokens = 1024
  c.grpo.beta = 0.1
  c.grpo.micro_batch_size = 32  # rollouts per forward/backward, summed into one update
  c.grpo.rollout_micro_batch_size = 128  # rows per sampler call: the most evaluation fits
  c.optimizer.learning_rate = 1e-6
  c.total_steps = 500
  c.eval_every = 50
  c.checkpoint_every = 50
  if arg == "smoke":
    base.shrink_real_data_smoke(c)
  return c


def get_sweep(arg=None):
  """Focal against the static aggregations, 3 seeds."""
  del arg
  return [{"aggregator.name": a, "seed": s} for a, s in
          itertools.product(("weighted_sum", "category_balanced", "focal"), (0, 1, 2))]
