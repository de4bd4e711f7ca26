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
import ml_collections

from focal import components


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg` picks a preset: None (the default run) or 'tiny' (seconds; for tests)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # one seed drives prompts, initialisation, warm start and sampling
  c.task = "suite"  # 'suite' (all six synthetic tasks) or one name from focal.tasks.names()
  c.model = "tiny"  # model scale from focal.models.scales.SCALES: tiny|small|base
  c.total_steps = 200  # GRPO iterations
  c.eval_every = 50  # evaluate on held-out prompts every this many steps (and at the end)
  c.log_every = 10  # write train metrics every this many steps
  c.checkpoint_every = 50  # save the train state every this many steps (and at the end)
  c.keep_checkpoints = 2  # how many recent checkpoints to keep
  c.vmap_seeds = False  # sweeps: grid points differing only in seed as one vmapped program (pays off on accelerators)

  c.data = ml_collections.ConfigDict()
  c.data.train_prompts_per_task = 128  # training prompts per task (prompt ids index aggregator state)
  c.data.eval_prompts_per_task = 32  # held-out prompts per task
  c.data.prompts_per_step = 12  # B: prompts per GRPO iteration, drawn without replacement per epoch

  c.grpo = components.grpo_config()  # focal.train.GRPOSettings: G, lengths, sampling, clip, KL
  c.grpo.max_new_tokens = 40  # response length cap (tasks need <= 40 bytes)

  c.advantage = components.advantage_config("grpo")  # name: one of focal.advantages.registered_estimators()

  c.optimizer = components.optimizer_config()  # focal.train.make_optimizer: grad clip, AdamW
  c.optimizer.learning_rate = 3e-4  # AdamW, constant

  c.aggregator = components.aggregator_config("focal")  # name: one of focal.aggregators.registered()
  c.aggregator.focal.w_min = 0.05  # Focal's weight floor (K * w_min <= 1): prevents collapse

  c.warm_start = ml_collections.ConfigDict()
  c.warm_start.steps = 300  # supervised steps on reference responses before RL (0 = none)
  c.warm_start.batch_size = 64  # sequences per supervised step
  c.warm_start.learning_rate = 3e-3  # AdamW learning rate of the warm start
  c.warm_start.quality = 0.5  # reference-response quality (focal.tasks.WARM_START_QUALITY)
  c.warm_start.responses_per_prompt = 4  # reference responses drawn per training prompt
  c.warm_start.cache_dir = "~/.cache/focal/warm_start"  # warm-started params cached per setting

  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 4  # sampled responses per held-out prompt (besides the greedy one)
  c.eval.temperature = 1.0  # temperature of the sampled evaluation

  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = (1, 1, 1)  # devices along (data, fsdp, tensor); product must equal the device count

  if arg == "tiny":
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
  elif arg is not None:
    raise ValueError(f"unknown preset {arg!r}; choose from: tiny")
  return c
