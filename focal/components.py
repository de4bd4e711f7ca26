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
  c.grader = components.grader_config("judge")           # kind + a block per grader kind
  c.eval.judge = components.judge_config()               # JudgeConfig's fields

so `--config.aggregator.<name>.<hparam>`, `--config.advantage.<name>.<hparam>` and
`--config.grader.<kind>.<field>` work for every registered component, and switching `name`
(or `kind`) alone always works. A saved config lacking a block or a field was written by an
older Focal: it is refused, naming the one-time migration (tools/migrate_results.py).
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import ml_collections
import numpy as np

from focal import advantages, aggregators, config_checks, policy, resume, tracking
from focal.aggregators import prompt_state
from focal.config_checks import check_batch_fits
from focal.data import sources as data_sources
from focal.graders import kinds as grader_kinds
from focal.graders.judge.config import check_blocks as check_judge_blocks
from focal.graders.kinds import judge as judge_kind
from focal.iteration import GRPOSettings, make_engine, make_optimizer
from focal.state_init import attach_adapters, batch_shards, initial_state

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
  return _block(judge_kind.defaults())


def grader_config(kind: str) -> ml_collections.ConfigDict:
  """{kind, <one block per registered grader kind that has one, holding its defaults>}."""
  c = ml_collections.ConfigDict({"kind": kind})
  for name in grader_kinds.names():
    defaults = grader_kinds.get(name).defaults
    if defaults is not None:
      c[name] = _block(defaults())
  return c


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


def data_source(config, tokens: policy.Tokens, width: int | None = None):
  """The loop's data source `config.data.source` names (focal.data.sources)."""
  return data_sources.get(data_fields(config).source).make(config, tokens, width)


def make_grader(config, source, block: str = "grader"):
  """The grader stage of kind `grader.kind` (focal.graders.kinds) for `source`, configured by
  `config.<block>` ("eval": an evaluation grader of its own, such as `eval.judge`)."""
  return grader_kinds.of(config).make(config.get(block), source, pitfall_mode(config))


def eval_grader(config, source, train_grader=None):
  """The evaluation grader of a run: its grader kind's own (a judge's `eval.judge` when that
  names an endpoint), else `train_grader`, or one like it when none was built (evaluation's
  own build)."""
  stage = grader_kinds.of(config).make_eval(config, source, pitfall_mode(config))
  if stage is None:
    stage = make_grader(config, source) if train_grader is None else train_grader
  return stage


def check_policy_and_data(config) -> None:
  """The model, data and grader fields: all that evaluating a saved run builds from."""
  policy.check_model(config)
  d, kind = data_fields(config), grader_kinds.kind_of(config)
  source, grader = data_sources.get(d.source), grader_kinds.get(kind)
  source.check(config, policy.model_fields(config)["checkpoint"])
  if grader.in_jit and not source.in_jit_grader:
    host = [n for n in grader_kinds.names() if not grader_kinds.get(n).in_jit]
    raise ValueError(f"data.source={d.source} has no {kind} grader: set grader.kind={host[0]}"
                     + (f" (or {', '.join(host[1:])})" if host[1:] else ""))
  pitfall_mode(config)
  grader.check(config)
  check_judge_blocks(config)
  if config.eval.judge.base_url and grader.make_eval is grader_kinds.like_training:
    readers = [n for n in grader_kinds.names()
               if grader_kinds.get(n).make_eval is not grader_kinds.like_training]
    raise ValueError(f"eval.judge.base_url is set, but grader.kind={kind} evaluates with its own "
                     f"grader and never reads eval.judge (grader.kind={' or '.join(readers)} "
                     "does): clear eval.judge.base_url, or train with that kind")


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
  config_checks.check_schedule(config)
  config_checks.check_batch(config, grpo_settings(config, eos_id=None, pad_id=0))
  config_checks.check_precision(config)
  optimizer(config)
  tracking.validate(config)


def run_engine(config, graphdef, settings: GRPOSettings, grader):
  """(optimizer, aggregator, engine) of a run whose grader stage is `grader`."""
  tx = optimizer(config)
  aggregator = make_aggregator(config)
  estimator, estimator_hparams = estimator_spec(config)
  engine = make_engine(graphdef, tx, aggregator, settings, estimator=estimator,
                       grader=grader.fn if grader.fused else None,
                       estimator_hparams=estimator_hparams, batch_shards=batch_shards(config))
  return tx, aggregator, engine


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
