r"""POW3R's recipe (arXiv 2605.20164) on HealthBench with a pretrained policy and an LLM judge.

The paper trains Qwen3-4B/8B-Instruct (also Qwen2.5-7B-Instruct, Llama 3.x) with G=16 rollouts
at T=1.0, k3 KL beta=0.1, clip 0.2, gradient-norm clip 0.5, AdamW at a constant learning rate
with no weight decay, one judge call per (rollout, criterion) with a small judge (GPT-5.4-nano)
and a stronger one for evaluation (GPT-5.4-mini). The checkpoint, the data and the judges are
yours; give them on the command line:

  export OPENAI_API_KEY=...        # read from the environment only, never stored
  python -m experiments.train --config=configs/paper/pow3r_healthbench.py \
      --config.model.checkpoint=/ckpts/Qwen3-4B-Instruct \
      --config.data.path=/data/healthbench/2025-05-07-06-14-12_oss_eval.jsonl \
      --config.grader.judge.base_url=https://api.openai.com/v1 \
      --config.grader.judge.model=gpt-5.4-nano \
      --config.eval.judge.base_url=https://api.openai.com/v1 --config.eval.judge.model=gpt-5.4-mini \
      --config.mesh.shape='(1,8,1)' --workdir=runs/pow3r_healthbench

and the baselines it is compared with by `--config.aggregator.name=category_balanced` and
`=weighted_sum` (or `python -m experiments.sweep --config=configs/paper/pow3r_healthbench.py`
with the same flags). A vLLM or SGLang server works as the judge: its base_url and model name.

What to expect (the paper's claims; not run here, this machine has no accelerator and no
network): POW3R > category-balanced > weighted sum on held-out mean rubric reward and strict
completion, and the same reward plateau in 2.5-4x fewer steps (steps_to_* in the sweep
summary). The learning rate below is a common choice for GRPO on 4-8B instruct models, not the
paper's (which its text does not give).

Slices, as compiled by experiments.plan for each without a TPU (docs/SCALING.md, "What fits
where"): at the settings below Qwen3-4B fits a v5p-8 with --config.mesh.shape='(1,4,1)' and
Qwen3-8B a v5p-16 with '(1,8,1)' (rollout, learn and evaluation, per chip under 90% of HBM).

The accessible slice (`:lora`): the same recipe and batch on a v5e-8 (a Colab or Kaggle TPU, 16
GiB per chip) with rank-32 adapters (alpha 64) on every attention and MLP projection of a frozen
bfloat16 Qwen3-4B, which is also the KL reference (no second copy); micro-batches of
16 rollouts per forward/backward and 64 per sampler call, each layer rematerialised:

  python -m experiments.train --config=configs/paper/pow3r_healthbench.py:lora \
      --config.model.checkpoint=/ckpts/Qwen3-4B-Instruct \
      --config.data.path=/data/healthbench/2025-05-07-06-14-12_oss_eval.jsonl \
      --config.grader.judge.base_url=https://api.openai.com/v1 \
      --config.grader.judge.model=gpt-5.4-nano \
      --config.eval.judge.base_url=https://api.openai.com/v1 --config.eval.judge.model=gpt-5.4-mini \
      --workdir=runs/pow3r_healthbench_lora

What experiments.plan says of it (compiled here for TPU, without one):

  python -m experiments.plan --config=configs/paper/pow3r_healthbench.py:lora \
      --topology=v5e-8 --config.model.checkpoint=configs/checkpoints/qwen3-4b \
      --config.mesh.shape='(1,8,1)'

  v5e-8: 8 x TPU v5e, 16 GiB HBM per chip (14.4 GiB usable with 10% headroom), mesh (1, 8, 1)
  run: 4.09B parameters (66.1M trainable: LoRA), 32 prompts x 16 rollouts, prompts 2048
  tokens; grpo.micro_batch_size=16, grpo.rollout_micro_batch_size=64
  state per chip: params 0.03 GiB, opt_state 0.06 GiB, ref_params 0.00 GiB, base 0.94 GiB
  | program | resident | inputs | output | temp | code | total GiB/chip | fits | compile s |
  | rollout | 1.03     | 0.00   | 0.00   | 4.19 | 0.067 | 5.29         | yes  | 745       |
  | learn   | 1.03     | 0.00   | 0.00   | 5.64 | 0.175 | 6.85         | yes  | 320       |
  FITS: every program fits v5e-8

(2026-12-07 on this project's 2-core CPU, each program alone: `--only=rollout`, `--only=learn`,
with `--eval_prompts=0 --search=false`; evaluation's sampler, 64 rows a call like the rollout's,
was not compiled.) Fully fine-tuned, the same model's
float32 parameters, AdamW moments and bfloat16 reference alone are 56 GB (6.6 GiB per chip)
before gradients and activations.
"""
import itertools

from configs import base
from configs.paper import judged


def get_config(arg=None):
  """`arg`: None (the recipe), 'lora' (low-rank adapters on Qwen3-4B for a v5e-8) or 'smoke'
  (the same wiring, shrunk; for tests)."""
  if arg not in (None, "lora", "smoke"):
    raise ValueError(f"unknown variant {arg!r}; choose None, 'lora' or 'smoke'")
  c = judged.get_config(arg, source="healthbench", max_prompt_tokens=2048)
  c.grader.judge.cache_path = "~/.cache/focal/verdicts/pow3r_healthbench.sqlite"
  c.eval.judge.cache_path = "~/.cache/focal/verdicts/pow3r_healthbench_eval.sqlite"
  c.aggregator.name = "pow3r"
  if arg == "lora":
    lora(c)
  if arg == "smoke":
    base.shrink_real_data_smoke(c)
  return c


def lora(c):
  """The accessible slice: rank-32 adapters on every attention and MLP projection of a frozen
  bfloat16 base (also the KL reference: no second copy), sized for a v5e-8 (16 GiB per chip)."""
  c.model.lora.rank = 32
  c.model.lora.alpha = 64.0  # alpha / rank = 2
  c.model.param_dtype = "bfloat16"  # the frozen base is read in the compute dtype; adapters are float32
  c.grpo.micro_batch_size = MICRO_BATCH  # rollouts per forward/backward (2 per chip)
  c.grpo.rollout_micro_batch_size = ROLLOUT_MICRO_BATCH  # rollouts per sampler call
  c.optimizer.learning_rate = 1e-5  # adapters take ~10x full fine-tuning's rate
  c.mesh.shape = (1, 8, 1)
  return c


MICRO_BATCH = 16
ROLLOUT_MICRO_BATCH = 64


def get_sweep(arg=None):
  """POW3R against category-balanced and weighted sum, 3 seeds."""
  del arg
  return [{"aggregator.name": a, "seed": s} for a, s in
          itertools.product(("weighted_sum", "category_balanced", "pow3r"), (0, 1, 2))]
