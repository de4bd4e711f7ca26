"""The built-in default: the six-task synthetic suite, the tiny model, Focal Reward.

  python -m experiments.train --config=configs/base.py --workdir=/tmp/focal
  python -m experiments.train --config=configs/base.py --config.aggregator.name=pow3r --workdir=DIR

Every field below can be overridden with `--config.<path>=value`; unknown fields
fail fast. The aggregator is picked by `aggregator.name`, and each registered
aggregator's hyper-parameters live in the block of the same name, so switching the
name alone always works. Those blocks (and `advantage`, `grpo`, `optimizer`) are
generated from the factories' signatures by `focal.components`, where each default
is documented; this file states only what the built-in default changes.
"""
import dataclasses

import ml_collections

from focal import components, tasks
from focal.models import config as model_config, lora

# How the model is computed and adapted: the defaults of focal.models.config.ModelConfig and
# focal.models.lora.LoRAConfig, stated there (documented here, field by field).
MODEL = {f.name: f.default for f in dataclasses.fields(model_config.ModelConfig)}
LORA = lora.LoRAConfig()


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg` picks a preset: None (the default run) or 'tiny' (seconds; for tests)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # one seed drives prompts, initialisation, warm start and sampling
  c.task = "suite"  # 'suite' (all six synthetic tasks) or one name from focal.tasks.names()
  c.total_steps = 200  # GRPO iterations
  c.eval_every = 50  # evaluate on held-out prompts every this many steps (and at the end)
  c.log_every = 10  # write train metrics every this many steps
  c.checkpoint_every = 50  # save the train state every this many steps (and at the end)
  c.keep_checkpoints = 2  # how many recent checkpoints to keep
  c.vmap_seeds = False  # sweeps: grid points differing only in seed as one vmapped program (pays off on accelerators)

  _model(c)
  _data(c)

  c.grader = components.grader_config("programmatic")  # kind: programmatic (in-jit, synthetic suite)|judge (an LLM judge)|rules (regex/keyword rules in the data), one of focal.graders.kinds.names(); grader.judge: an OpenAI-compatible endpoint (focal.graders.judge.config.JudgeConfig)
  c.grader.overlap = False  # judge/rules: sample step t+1 while step t is graded (one update stale; train/policy_lag)

  c.grpo = components.grpo_config()  # focal.iteration.GRPOSettings: G, lengths, sampling, clip, KL

  c.advantage = components.advantage_config("grpo")  # name: one of focal.advantages.registered_estimators()

  c.optimizer = components.optimizer_config()  # focal.iteration.make_optimizer: grad clip, AdamW

  c.aggregator = components.aggregator_config("focal")  # name: one of focal.aggregators.registered()

  c.warm_start = ml_collections.ConfigDict()
  c.warm_start.steps = 300  # supervised steps on reference responses before RL (0 = none)
  c.warm_start.batch_size = 64  # sequences per supervised step
  c.warm_start.learning_rate = 3e-3  # AdamW learning rate of the warm start
  c.warm_start.quality = tasks.WARM_START_QUALITY  # reference-response quality (the diagnostics' too)
  c.warm_start.responses_per_prompt = 4  # reference responses drawn per training prompt
  c.warm_start.cache_dir = "~/.cache/focal/warm_start"  # warm-started params cached per setting

  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 4  # sampled responses per held-out prompt (besides the greedy one)
  c.eval.temperature = 1.0  # temperature of the sampled evaluation
  c.eval.judge = components.judge_config()  # a separate evaluation judge; base_url "" = the training grader
  c.eval.judge.template = "healthbench"  # the evaluation judge asks in each criterion's original sense

  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = (1, 1, 1)  # devices along (data, fsdp, tensor); product must equal the device count
  c.mesh.ref_memory_kind = "device"  # where the reference policy (beta > 0) waits between steps: device|pinned_host (host memory)

  _log(c)

  if arg == "tiny":
    _tiny(c)
  elif arg is not None:
    raise ValueError(f"unknown preset {arg!r}; choose from: tiny")
  return c



def _model(c: ml_collections.ConfigDict) -> None:
  """The policy: a byte-level scale or a Hugging Face checkpoint, and how it is computed."""
  c.model = ml_collections.ConfigDict()
  c.model.scale = "tiny"  # byte-level scale from focal.models.scales.SCALES: tiny|small|base (--config.model=NAME works too)
  c.model.checkpoint = ""  # a local Hugging Face checkpoint directory (Qwen2/2.5, Qwen3, Llama 3.x); "" = the scale above
  c.model.dtype = MODEL["dtype"]  # compute dtype: float32|bfloat16
  c.model.param_dtype = MODEL["param_dtype"]  # parameter storage dtype: float32|bfloat16
  c.model.remat = MODEL["remat"]  # recompute each layer in the backward pass: none|block|dots (block, but keep its weight matmuls' outputs)
  c.model.attention = MODEL["attention"]  # multi-token attention kernel: auto (splash on TPU, else xla)|xla|splash (Pallas TPU kernel)
  c.model.logits_chunk = MODEL["logits_chunk"]  # positions per chunk of the log-prob pass through the LM head (0 = about 2^26 logits per chunk)
  c.model.lora = ml_collections.ConfigDict()  # low-rank adapters (focal.models.lora): train A, B beside frozen kernels
  c.model.lora.rank = LORA.rank  # adapter rank r (0 = full fine-tuning: every parameter trains)
  c.model.lora.alpha = LORA.alpha  # the adapter's update is scaled by alpha / rank
  c.model.lora.dropout = LORA.dropout  # must be 0: GRPO's ratio compares the loss's forward with the (dropout-free) sampler's
  c.model.lora.targets = LORA.targets  # regex over kernel paths ('layers/attn/q_proj/kernel'): the attention and MLP projections
  c.model.lora.train_embeddings = LORA.train_embeddings  # with rank > 0: also train the embedding and LM head (else frozen with the base)


def _data(c: ml_collections.ConfigDict) -> None:
  """The prompts and rubrics: the synthetic suite or a rubric file."""
  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"  # synthetic (the six tasks)|rar|healthbench|rubric_jsonl (README: the rubric JSONL schema)
  c.data.path = ""  # rar/healthbench/rubric_jsonl: a local JSONL file, or an already built TFDS directory
  c.data.eval_path = ""  # a held-out JSONL file; "" = hold out data.eval_fraction of data.path
  c.data.eval_fraction = 0.1  # share of data.path held out (chosen by a hash of each prompt's text)
  c.data.max_eval_prompts = 0  # evaluate on at most this many held-out prompts (0 = all)
  c.data.max_prompt_tokens = 1024  # longer prompts are cut from the left or skipped (counted in step 0's row)
  c.data.long_prompts = "truncate"  # truncate|skip: what happens to a prompt over max_prompt_tokens
  c.data.max_criteria = 0  # K, criterion slots per prompt (0 = the data's longest rubric)
  c.data.cache_dir = ""  # where built datasets are kept, keyed by the source's content hash ("" = ~/.cache/focal/datasets)
  c.data.train_prompts_per_task = 128  # synthetic: training prompts per task (prompt ids index aggregator state)
  c.data.eval_prompts_per_task = 32  # synthetic: held-out prompts per task
  c.data.prompts_per_step = 12  # B: prompts per GRPO iteration, drawn without replacement per epoch


def _log(c: ml_collections.ConfigDict) -> None:
  """Where rows go besides metrics.jsonl and tb/."""
  c.log = ml_collections.ConfigDict()  # where rows go besides metrics.jsonl and tb/
  c.log.wandb = ml_collections.ConfigDict()  # Weights & Biases (focal.tracking)
  c.log.wandb.enabled = False  # log each row to W&B from process 0 (pip install wandb)
  c.log.wandb.project = "focal"  # W&B project
  c.log.wandb.entity = ""  # W&B user or team ("" = your default entity)
  c.log.wandb.mode = "online"  # online|offline (local files; `wandb sync` later)|disabled
  c.log.wandb.run_name = ""  # display name ("" = the run directory's name)
  c.log.wandb.dir = ""  # where W&B writes its files ("" = the run directory, DIR/wandb/)


def _tiny(c: ml_collections.ConfigDict) -> None:
  """The 'tiny' preset: the same run in seconds (tests)."""
  c.task = "keywords"
  c.total_steps = 4
  c.eval_every = 2
  c.log_every = 1
  c.checkpoint_every = 2
  c.data.train_prompts_per_task = 8
  c.data.eval_prompts_per_task = 4
  c.data.prompts_per_step = 4
  c.grpo.group_size = 4
  c.grpo.max_new_tokens = 16
  c.warm_start.steps = 4
  c.warm_start.batch_size = 8
  c.eval.num_samples = 2


def shrink_real_data_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A real-data preset's 'smoke' variant (configs/paper/*): the same wiring, shrunk to
  seconds on a tiny checkpoint (tests), with no verdict cache."""
  c.data.max_eval_prompts = 0
  c.data.max_prompt_tokens = 256
  c.data.prompts_per_step = 2
  c.grpo.group_size = 2
  c.grpo.max_new_tokens = 8
  c.grpo.micro_batch_size = c.grpo.rollout_micro_batch_size = 0  # a shrunk batch is one pass
  c.model.dtype = MODEL["dtype"]
  c.grader.judge.cache_path = c.eval.judge.cache_path = ""
  c.total_steps = c.eval_every = 2
  return c
