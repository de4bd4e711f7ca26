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
from configs.paper import judged


def get_config(arg=None):
  """`arg`: None (the recipe) or 'smoke' (the same wiring, shrunk; for tests)."""
  if arg not in (None, "smoke"):
    raise ValueError(f"unknown variant {arg!r}; choose None or 'smoke'")
  c = judged.get_config(arg, source="rar", max_prompt_tokens=1024)
  c.data.eval_fraction = 0.05  # held out by a hash of each question (or give data.eval_path)
  c.grader.judge.cache_path = "~/.cache/focal/verdicts/focal_rar.sqlite"
  if arg == "smoke":
    base.shrink_real_data_smoke(c)
  return c


def get_sweep(arg=None):
  """Focal against the static aggregations, 3 seeds."""
  del arg
  return [{"aggregator.name": a, "seed": s} for a, s in
          itertools.product(("weighted_sum", "category_balanced", "focal"), (0, 1, 2))]
