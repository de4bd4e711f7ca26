"""What the two judged paper presets (focal_rar.py, pow3r_healthbench.py) share: a pretrained
instruction-tuned checkpoint trained under an LLM judge with the POW3R paper's GRPO settings
(arXiv 2605.20164: G=16 at T=1.0, k3 KL beta=0.1, clip 0.2, grad-norm clip 0.5, AdamW at a
constant rate without weight decay), at the batch and memory settings planned for a TPU slice
(docs/SCALING.md). Not a config itself: each preset starts from `get_config` and states what
differs.
"""
from configs import base


def get_config(arg=None, *, source: str, max_prompt_tokens: int):
  """The shared recipe for data.source=`source`; `arg` 'smoke' starts from the tiny preset (the
  caller shrinks it last with base.shrink_real_data_smoke)."""
  c = base.get_config("tiny" if arg == "smoke" else None)
  c.model.dtype = "bfloat16"  # compute; parameters stay float32 (model.param_dtype)
  c.model.remat = "block"  # keep each layer's input only: a 4B learn step fits a v5p chip
  c.data.source = source
  c.data.max_eval_prompts = 500  # evaluation cost: 500 prompts x (1 greedy + 4 sampled) x ~10 criteria
  c.data.max_prompt_tokens = max_prompt_tokens  # longer prompts are cut from the left, and counted
  c.data.prompts_per_step = 32
  c.warm_start.steps = 0  # an instruction-tuned checkpoint needs no warm start
  c.grader.kind = "judge"
  c.grader.judge.max_concurrency = 64
  c.grpo.group_size = 16  # the POW3R paper's G
  c.grpo.temperature = 1.0  # the POW3R paper's sampling temperature
  c.grpo.max_new_tokens = 1024
  c.grpo.beta = 0.1  # the POW3R paper's k3 KL weight
  c.grpo.eps_low = c.grpo.eps_high = 0.2  # the POW3R paper's clip
  c.grpo.micro_batch_size = 32  # rollouts per forward/backward, summed into one update
  c.grpo.rollout_micro_batch_size = 128  # rows per sampler call: the most evaluation fits
  c.optimizer.learning_rate = 1e-6  # a common choice for GRPO on 4-8B instruct models, not the paper's
  c.optimizer.grad_clip = 0.5  # the POW3R paper's gradient-norm clip
  c.optimizer.weight_decay = 0.0  # the POW3R paper's AdamW has none
  c.total_steps = 500
  c.checkpoint_every = 50
  return c
