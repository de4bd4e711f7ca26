"""The one place a config becomes objects: data source, policy, grader, aggregator,
estimator, optimizer, GRPO settings, and the initial train state.

Config blocks of registered components are generated from their factories'
signatures, so a default lives in exactly one place (the factory, or the
`GRPOSettings` / `JudgeConfig` dataclass, or `make_optimizer`) and a config file
states only what its preset changes:

  c.aggregator = components.aggregator_config("focal")   # name + a block per aggregator
  c.advantage = components.advantage_config("grpo")      # name + a block per estimator
  c.grpo = components.grpo_config()                      # GRPOSettings' fields
  c.optimizer = components.optimizer_config()            # make_optimizer's arguments
  c.grader.judge = components.judge_config()             # JudgeConfig's fields

so `--config.aggregator.<name>.<hparam>` and `--config.advantage.<name>.<hparam>` work
for every registered component, and switching `name` alone always works. A saved config
lacking a block or a field was written by an older Focal: it is refused, naming the one-time
migration (tools/migrate_results.py).
"""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any

import jax
import ml_collections
import numpy as np

from focal import advantages, aggregators, policy, resume, sharding, tracking
from focal.aggregators import prompt_state
from focal.data import sources as data_sources
from focal.graders.judge.config import check_blocks as check_judge_blocks
from focal.graders.stage import GRADER_KINDS, HostGrader, InJitGrader, RulesGrader, check_rules
from focal.iteration import GRPOSettings, init_train_state, make_engine, make_optimizer

# GRPOSettings fields that come from the tokenizer, not from the config.
_TOKEN_FIELDS = ("eos_id", "pad_id")


def _block(defaults: dict[str, Any]) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(defaults))


def aggregator_config(name: str) -> ml_collections.ConfigDict:
  """{name, <one block per registered aggregator holding its factory's defaults>}."""
  c = ml_collections.ConfigDict({"name": name})
  for agg in aggregators.registered():
    c[agg] = _block(aggregators.defaults(agg))
  return c


def advantage_config(name: str) -> ml_collections.ConfigDict:
  """{name, <one block per registered advantage estimator holding its defaults>}."""
  c = ml_collections.ConfigDict({"name": name})
  for est in advantages.registered_estimators():
    c[est] = _block(advantages.estimator_defaults(est))
  return c


def grpo_config() -> ml_collections.ConfigDict:
  """GRPOSettings' fields and defaults (EOS and padding ids come from the tokenizer)."""
  return _block({f.name: f.default for f in dataclasses.fields(GRPOSettings)
                 if f.name not in _TOKEN_FIELDS})


def optimizer_config() -> ml_collections.ConfigDict:
  """make_optimizer's arguments and defaults."""
  params = inspect.signature(make_optimizer).parameters
  return _block({p.name: p.default for p in params.values()})


def judge_config() -> ml_collections.ConfigDict:
  """JudgeConfig's fields and defaults (focal.graders.judge.config documents each)."""
  from focal.graders.judge.config import JudgeConfig
  return _block({f.name: f.default for f in dataclasses.fields(JudgeConfig)})


def _hparams(section, name: str, defaults: dict) -> dict:
  """Block `name` of `section`, which holds every field its component takes (`defaults`)."""
  block = section.get(name)
  missing = sorted(set(defaults) - set(block or {}))
  if block is None or missing:
    raise ValueError(f"the config's {name!r} block lacks {missing or 'every field'}: a config "
                     f"saved by an older Focal? Migrate its run once: {resume.MIGRATE} RUN_DIR")
  return dict(block.to_dict())


def make_aggregator(config) -> aggregators.Aggregator:
  """The aggregator named by `config.aggregator.name` with its block's hyper-parameters."""
  name = config.aggregator.name
  if name not in aggregators.registered():
    raise ValueError(f"unknown aggregator {name!r} (config.aggregator.name); "
                     f"registered: {', '.join(aggregators.registered())}")
  return aggregators.make(name, **_hparams(config.aggregator, name, aggregators.defaults(name)))


def estimator_spec(config) -> tuple[str, dict]:
  """(name, hyper-parameters) of the advantage estimator `config.advantage` selects."""
  name = config.advantage.name
  if name not in advantages.registered_estimators():
    raise ValueError(f"unknown advantage estimator {name!r} (config.advantage.name); "
                     f"registered: {', '.join(advantages.registered_estimators())}")
  hparams = _hparams(config.advantage, name, advantages.estimator_defaults(name))
  advantages.make_estimator(name, **hparams)  # fails here, naming the bad hyper-parameter
  return name, hparams


def pitfall_mode(config) -> str:
  """How the training aggregator treats pitfalls (what a judge is asked under)."""
  name = config.aggregator.name
  return _hparams(config.aggregator, name, aggregators.defaults(name)).get("pitfall_mode", "flip")


def grpo_settings(config, eos_id, pad_id: int) -> GRPOSettings:
  fields = _hparams(config, "grpo", grpo_config())
  unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(GRPOSettings)})
  if unknown:
    raise ValueError(f"unknown config.grpo field(s) {unknown}")
  return GRPOSettings(eos_id=eos_id, pad_id=pad_id, **fields)


def settings_for(config, tokens: policy.Tokens) -> GRPOSettings:
  """The run's GRPO settings with the policy's stop and padding ids."""
  stops = tokens.stop_ids[0] if len(tokens.stop_ids) == 1 else tuple(tokens.stop_ids)
  return grpo_settings(config, stops, tokens.pad_id)


def optimizer(config):
  return make_optimizer(**config.optimizer.to_dict())


def data_fields(config):
  """The `data` block."""
  return config.data


def grader_kind(config) -> str:
  return config.grader.kind


def data_source(config, tokens: policy.Tokens, width: int | None = None):
  """The loop's data source `config.data.source` names (focal.data.sources)."""
  return data_sources.get(data_fields(config).source).make(config, tokens, width)


def make_grader(config, source, block: str = "grader"):
  """The grader stage `config.<block>` names for `source` (see focal.graders.stage)."""
  kind = grader_kind(config)
  if kind == "programmatic":
    return InJitGrader(source)
  if kind == "rules":
    check_rules(source)
    return HostGrader(source, RulesGrader(), pitfall_mode(config))
  from focal.graders.judge import JudgeClient, JudgeConfig
  section = config.grader if block == "grader" else config.eval
  client = JudgeClient(JudgeConfig.from_mapping(section.judge.to_dict()))
  conversations, criteria, crit_mask = source.judge_inputs("train", [0])
  first = int(np.argmax(crit_mask[0]))
  # An unreachable endpoint, a refused key or an unknown model stop here, on a real request.
  client.preflight(conversations[0], criteria[0][first])
  return HostGrader(source, client, pitfall_mode(config))


def evaluates_with_eval_judge(config) -> bool:
  """Whether `eval.judge` names an endpoint (the papers evaluate with a stronger judge than they
  train with); otherwise evaluation grades with the training grader."""
  return bool(config.eval.judge.base_url)


def eval_grader(config, source, train_grader):
  """The evaluation grader of a run that built `train_grader`: `eval.judge`'s, or that one."""
  if not evaluates_with_eval_judge(config):
    return train_grader
  return make_grader(config, source, block="eval")


def check_policy_and_data(config) -> None:
  """The model, data and grader fields: all that evaluating a saved run builds from."""
  policy.check_model(config)
  d, kind = data_fields(config), grader_kind(config)
  source = data_sources.get(d.source)
  if kind not in GRADER_KINDS:
    raise ValueError(f"unknown grader.kind {kind!r}; choose from {', '.join(GRADER_KINDS)}")
  source.check(config, policy.model_fields(config)["checkpoint"])
  if kind == "programmatic" and not source.in_jit_grader:
    raise ValueError(f"data.source={d.source} has no programmatic grader: set "
                     "grader.kind=judge (or rules)")
  pitfall_mode(config)
  check_judge_blocks(config)


def validate(config) -> None:
  """Fails fast, naming the field and the valid choices, before anything is built."""
  make_aggregator(config)
  estimator_spec(config)
  check_policy_and_data(config)
  d = data_fields(config)
  if (config.warm_start.steps and not policy.model_fields(config)["checkpoint"]
      and not data_sources.get(d.source).reference_responses):
    raise ValueError("warm_start.steps > 0 imitates the synthetic suite's reference responses; "
                     f"set it to 0 for data.source={d.source}")
  _check_schedule(config)
  _check_batch(config)
  _check_precision(config)
  optimizer(config)
  tracking.validate(config)


def _check_schedule(config) -> None:
  for field in ("total_steps", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints"):
    if not isinstance(config[field], int) or config[field] < 1:
      raise ValueError(f"config.{field} must be an integer >= 1, got {config[field]!r}"
                       + (" (0 would keep no checkpoint: a resume would lose the run)"
                          if field == "keep_checkpoints" else ""))
  steps = config.warm_start.steps
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
    raise ValueError(f"config.warm_start.steps must be an integer >= 0 (0 = no warm start), "
                     f"got {steps!r}")
  e = config.eval
  if e.num_samples < 1 or not e.temperature > 0:
    raise ValueError(f"config.eval needs num_samples >= 1 and temperature > 0, got "
                     f"{e.num_samples} and {e.temperature}")


def _check_precision(config) -> None:
  """bfloat16 parameters lose small updates: a weight w moves only by steps of at least about
  |w| 2^-9, and an AdamW step is about the learning rate. At lr 1e-6, 2% of N(0, 0.02) weights
  move at all (88% at 1e-4); the optimizer's own sums are float32 either way."""
  lr = config.optimizer.learning_rate
  lora = policy.lora_config(config)
  if lora.rank and not lora.train_embeddings:
    return  # only the adapters train, and they are float32 whatever model.param_dtype says
  if (policy.model_fields(config)["param_dtype"] == "bfloat16" and isinstance(lr, float)
      and lr < 1e-4):
    warnings.warn(f"model.param_dtype=bfloat16 with optimizer.learning_rate={lr:g}: most "
                  "updates round away in bfloat16 weights (2% of N(0, 0.02) weights move at "
                  "1e-6); keep param_dtype=float32 to train, or raise the learning rate",
                  stacklevel=3)


def _check_batch(config) -> None:
  """The GRPO settings, and every batch dimension against the mesh, before anything is built."""
  settings = grpo_settings(config, eos_id=None, pad_id=0)
  b = config.data.prompts_per_step
  if b < 1:
    raise ValueError(f"config.data.prompts_per_step must be >= 1, got {b}")
  n = b * settings.group_size
  if n % settings.num_minibatches:
    raise ValueError(f"grpo.num_minibatches={settings.num_minibatches} does not divide the "
                     f"{n} rollouts of a step (data.prompts_per_step x grpo.group_size)")
  mini = n // settings.num_minibatches
  for field, size, whole, of in (
      ("micro_batch_size", settings.micro_batch_size, mini, "a mini-batch"),
      ("rollout_micro_batch_size", settings.rollout_micro_batch_size, n, "a step")):
    if size and whole % size:
      raise ValueError(f"grpo.{field}={size} does not divide the {whole} rollouts of {of}")
  shape = tuple(int(s) for s in config.mesh.shape)
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f"config.mesh.shape must be three sizes >= 1 (data, fsdp, tensor), got "
                     f"{shape}")
  kind = config.mesh.ref_memory_kind
  if kind not in sharding.REF_MEMORY_KINDS:
    raise ValueError(f"config.mesh.ref_memory_kind must be one of {sharding.REF_MEMORY_KINDS}, "
                     f"got {kind!r}")
  n_dev, found = int(np.prod(shape)), jax.device_count()
  if n_dev > found or (n_dev < found and jax.process_count() > 1):
    raise ValueError(f"config.mesh.shape={shape} needs {n_dev} devices, found {found}"
                     + (" (a multi-process run uses every device)" if n_dev < found else ""))
  if n_dev < found:  # e.g. the default (1,1,1) on an 8-chip TPU: runs, on the first chip
    warnings.warn(f"config.mesh.shape={shape} uses {n_dev} of the {found} devices; set "
                  f"--config.mesh.shape to use them all (docs/SCALING.md)", stacklevel=2)
  rows = shape[0] * shape[1]
  if b % rows:
    raise ValueError(f"config.data.prompts_per_step={b} is not a multiple of the mesh's "
                     f"data x fsdp = {shape[0]} x {shape[1]} = {rows} (each device group takes "
                     f"whole prompts); use a multiple of {rows}")


def check_batch_fits(config, source) -> None:
  """A step draws prompts_per_step distinct prompts: no more than the training set holds."""
  b, n = config.data.prompts_per_step, source.size("train")
  if b > n:
    where = config.data.path or f"the synthetic task {config.task!r}"
    raise ValueError(f"config.data.prompts_per_step={b} is larger than the training set ({n} "
                     f"prompts in {where}): a step would repeat prompts within its batch; use "
                     f"at most {n}, or more training prompts")


def batch_shards(config) -> int:
  """The devices a step's rows are split over: data x fsdp of `mesh.shape`."""
  shape = tuple(int(x) for x in config.mesh.shape)
  return shape[0] * shape[1]


def reference_fields(config, settings: GRPOSettings) -> dict:
  """How the run keeps its reference policy: not at all with beta = 0 (nothing reads it), else
  in the compute dtype (the reference pass casts its weights to it anyway)."""
  return {"reference": settings.beta > 0, "ref_dtype": policy.model_fields(config)["dtype"]}


def run_engine(config, graphdef, settings: GRPOSettings, grader):
  """(optimizer, aggregator, engine) of a run whose grader stage is `grader`."""
  tx = optimizer(config)
  aggregator = make_aggregator(config)
  estimator, estimator_hparams = estimator_spec(config)
  engine = make_engine(graphdef, tx, aggregator, settings, estimator=estimator,
                       grader=grader.fn if grader.fused else None,
                       estimator_hparams=estimator_hparams, batch_shards=batch_shards(config))
  return tx, aggregator, engine


def initial_state(config, settings: GRPOSettings, params, tx, aggregator, num_prompts: int,
                  max_criteria: int, base=None):
  """The run's first TrainState (works under jax.eval_shape on abstract parameters); with LoRA,
  `params` are the trainable adapters and `base` the frozen rest (`attach_adapters`)."""
  return init_train_state(params, tx, aggregator, num_prompts=num_prompts,
                          max_criteria=max_criteria, rng=jax.random.key(config.seed + 1),
                          base=base, **reference_fields(config, settings))


def attach_adapters(config, graphdef, params):
  """(graphdef, base, trainable) of the run's policy: with `model.lora.rank` > 0, adapters
  drawn from the seed beside the loaded (or warm-started) policy, which becomes the frozen base;
  else (graphdef, None, params)."""
  from focal.models import lora
  return lora.attach(policy.lora_config(config), graphdef, params, jax.random.key(config.seed + 2))


@dataclasses.dataclass
class Setup:
  """Everything a run builds from its config before the first step."""
  config: ml_collections.ConfigDict
  source: Any                   # batches, held-out prompts, criterion names (focal.data)
  graphdef: Any
  engine: Any                   # the jittable halves of a GRPO iteration (focal.iteration.Engine)
  state: Any                    # the initial TrainState (warm-started or loaded policy)
  settings: GRPOSettings
  warm_start_losses: np.ndarray
  grader: Any                   # the training grader stage (focal.graders.stage)
  eval_grader: Any              # what evaluation grades with (the same, or eval.judge)


def build(config, progress: bool = True, width: int | None = None, mesh=None) -> Setup:
  """Everything before the first step. `width` pads prompts wider than they need
  (runs stacked along a seed axis must share shapes); `mesh` receives a checkpoint's
  parameters as they are read."""
  validate(config)
  tokens = policy.tokens_for(config)
  source = data_source(config, tokens, width)
  check_batch_fits(config, source)
  settings = settings_for(config, tokens)
  graphdef, params, losses = policy.init_policy(config, source, settings.max_new_tokens, mesh,
                                                progress)
  graphdef, base, params = attach_adapters(config, graphdef, params)
  grader = make_grader(config, source)
  tx, aggregator, engine = run_engine(config, graphdef, settings, grader)
  state = initial_state(config, settings, params, tx, aggregator, source.num_prompts,
                        source.max_criteria, base)
  prompt_state.check_prompt_ids(state.agg_state, source.train_rubric.prompt_ids)
  return Setup(config, source, graphdef, engine, state, settings, losses, grader,
               eval_grader(config, source, grader))
