"""The built-in default: the six-task synthetic suite, the tiny model, Focal Reward.

  python -m experiments.train --config=configs/base.py --workdir=/tmp/focal
  python -m experiments.train --config=configs/base.py --config.aggregator.name=pow3r --workdir=DIR

Every field below can be overridden with `--config.<path>=value`; unknown fields
fail fast. The aggregator is picked by `aggregator.name`, and each aggregator's
hyper-parameters live in the block of the same name, so switching the name alone
always works.
"""
import ml_collections


def aggregator_blocks() -> ml_collections.ConfigDict:
  """One block per registered aggregator, holding its hyper-parameters."""
  a = ml_collections.ConfigDict()
  a.name = "focal"  # which block below is used: weighted_sum|uniform|strict|category_balanced|pow3r|focal|pow3r_focal

  a.weighted_sum = ml_collections.ConfigDict()
  a.weighted_sum.pitfall_mode = "flip"  # flip: pitfall s'=1-s, w'=|w| (POW3R A.4); signed: HealthBench

  a.uniform = ml_collections.ConfigDict()
  a.uniform.pitfall_mode = "flip"  # as in weighted_sum

  a.strict = ml_collections.ConfigDict()
  a.strict.pitfall_mode = "flip"  # as in weighted_sum (strict passes avoided pitfalls either way)

  a.category_balanced = ml_collections.ConfigDict()
  a.category_balanced.pitfall_mode = "flip"  # as in weighted_sum

  a.pow3r = ml_collections.ConfigDict()
  a.pow3r.lam = 0.5  # mix of contrast ratio rho into the target factor (POW3R lambda)
  a.pow3r.beta = 0.2  # EMA rate of the per-(prompt, criterion) factors
  a.pow3r.alpha_min = 0.67  # lower clip of the factors
  a.pow3r.alpha_max = 1.5  # upper clip of the factors
  a.pow3r.eps = 1e-4  # floor inside sqrt(v + eps), keeps dead categories finite
  a.pow3r.min_valid_frac = 0.75  # a criterion needs ceil(frac * G) valid verdicts to update
  a.pow3r.pitfall_mode = "flip"  # POW3R trains on flipped pitfalls

  a.focal = ml_collections.ConfigDict()
  a.focal.temperature = 1.0  # softmax temperature of the inverse reward projection ([0,1] scale)
  a.focal.gamma = 3.0  # focusing exponent on (1 - saturation + eps); 0 = static weights
  a.focal.eps = 0.05  # keeps fully saturated criteria from weight exactly 0
  a.focal.w_min = 0.05  # weight floor per criterion (K * w_min <= 1); prevents collapse
  a.focal.w_max = 1.0  # weight cap per criterion
  a.focal.ema = 0.0  # EMA of saturation across visits of a prompt; 0 = per-visit estimate
  a.focal.pitfall_mode = "flip"  # pitfalls as avoid-criteria

  a.pow3r_focal = ml_collections.ConfigDict()
  a.pow3r_focal.lam = 0.5  # POW3R lambda
  a.pow3r_focal.beta = 0.2  # POW3R factor EMA rate
  a.pow3r_focal.alpha_min = 0.67  # POW3R factor lower clip
  a.pow3r_focal.alpha_max = 1.5  # POW3R factor upper clip
  a.pow3r_focal.eps = 1e-4  # POW3R sqrt floor
  a.pow3r_focal.min_valid_frac = 0.75  # POW3R valid-verdict quorum
  a.pow3r_focal.temperature = 1.0  # Focal projection temperature
  a.pow3r_focal.gamma = 3.0  # Focal focusing exponent
  a.pow3r_focal.focal_eps = 0.05  # Focal eps inside (1 - sat + eps)
  a.pow3r_focal.ema = 0.0  # Focal saturation EMA across visits
  a.pow3r_focal.pitfall_mode = "flip"  # pitfalls as avoid-criteria
  return a


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

  c.grpo = ml_collections.ConfigDict()
  c.grpo.group_size = 8  # G rollouts per prompt
  c.grpo.max_new_tokens = 40  # response length cap (tasks need <= 40 bytes)
  c.grpo.temperature = 1.0  # sampling temperature
  c.grpo.top_k = 0  # 0 disables top-k
  c.grpo.top_p = 1.0  # 1 disables nucleus sampling
  c.grpo.mu = 1  # passes over each rollout batch
  c.grpo.num_minibatches = 1  # mini-batches per pass
  c.grpo.eps_low = 0.2  # clip below 1
  c.grpo.eps_high = 0.2  # clip above 1
  c.grpo.beta = 0.0  # k3 KL weight to the warm-started reference (POW3R: 0.1)
  c.grpo.loss_aggregation = "seq_mean_token_mean"  # seq_mean_token_mean|token_mean|dr_grpo

  c.advantage = ml_collections.ConfigDict()
  c.advantage.name = "grpo"  # grpo|dr_grpo|batch_std|gdpo|dvao|sa_mrpo (focal.advantages)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 3e-4  # AdamW, constant
  c.optimizer.grad_clip = 0.5  # global-norm clip (POW3R: 0.5)
  c.optimizer.weight_decay = 0.0  # POW3R: 0

  c.aggregator = aggregator_blocks()

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
