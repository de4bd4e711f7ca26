"""The one place a config becomes objects: data source, policy, grader, aggregator,
estimator, optimizer, GRPO settings, and the initial train state.

Config blocks of registered components are generated from their factories'
signatures, so a default lives in exactly one place (the factory, or the
`GRPOSettings` dataclass, or `make_optimizer`) and a config file states only
what its preset changes:

  c.aggregator = components.aggregator_config("focal")   # name + a block per aggregator
  c.advantage = components.advantage_config("grpo")      # name + a block per estimator
  c.grpo = components.grpo_config()                      # GRPOSettings' fields
  c.optimizer = components.optimizer_config()            # make_optimizer's arguments

so `--config.aggregator.<name>.<hparam>` and `--config.advantage.<name>.<hparam>` work
for every registered component, and switching `name` alone always works. A block
missing from an older run's config.json takes the factory's defaults.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import ml_collections
import numpy as np

from focal import advantages, aggregators, tasks
from focal.data.synthetic_source import SyntheticSource
from focal.models.scales import get_scale
from focal.models.transformer import init_model
from focal.train import GRPOSettings, init_train_state, make_engine, make_optimizer
from focal.warm_start import warm_start_params

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


def _hparams(section, name: str, defaults: dict) -> dict:
  block = section.get(name)
  given = {} if block is None else dict(block.to_dict())
  return {**defaults, **given}


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


def grpo_settings(config, eos_id: int | None, pad_id: int) -> GRPOSettings:
  fields = _hparams(config, "grpo", {})
  return GRPOSettings(eos_id=eos_id, pad_id=pad_id, **fields)


def optimizer(config):
  return make_optimizer(**config.optimizer.to_dict())


def data_source(config, width: int | None = None) -> SyntheticSource:
  d = config.data
  return SyntheticSource(config.task, d.train_prompts_per_task, d.eval_prompts_per_task,
                         d.prompts_per_step, config.seed, width)


def validate(config) -> None:
  """Fails fast, naming the field and the valid choices, before anything is built."""
  make_aggregator(config)
  estimator_spec(config)
  get_scale(config.model)
  if config.task != "suite" and config.task not in tasks.names():
    raise ValueError(f"unknown task {config.task!r} (config.task); choose 'suite' or one of "
                     f"{', '.join(tasks.names())}")
  n_dev = int(np.prod(config.mesh.shape))
  if n_dev != jax.device_count():
    raise ValueError(f"config.mesh.shape={tuple(config.mesh.shape)} needs {n_dev} devices, "
                     f"found {jax.device_count()}")
  for field in ("total_steps", "eval_every", "log_every", "checkpoint_every"):
    if config[field] < 1:
      raise ValueError(f"config.{field} must be >= 1, got {config[field]}")


@dataclasses.dataclass
class Setup:
  """Everything a run builds from its config before the first step."""
  config: ml_collections.ConfigDict
  source: Any                   # SyntheticSource: batches, held-out prompts, criterion names
  graphdef: Any
  engine: Any                   # the jittable halves of a GRPO iteration (focal.train.Engine)
  state: Any                    # the initial TrainState (warm-started policy)
  settings: GRPOSettings
  warm_start_losses: np.ndarray
  grade: Any                    # the jitted programmatic grader (evaluation reuses it)


def build(config, progress: bool = True, width: int | None = None) -> Setup:
  """Everything before the first step. `width` pads prompts wider than they need
  (runs stacked along a seed axis must share shapes)."""
  validate(config)
  source = data_source(config, width)
  settings = grpo_settings(config, source.eos_id, source.pad_id)
  model_cfg = get_scale(config.model, max_seq_len=source.width + settings.max_new_tokens)
  graphdef, params = init_model(model_cfg, jax.random.key(config.seed))
  params, losses = warm_start_params(config, source, graphdef, params, progress)
  tx = optimizer(config)
  aggregator = make_aggregator(config)
  estimator, estimator_hparams = estimator_spec(config)
  engine = make_engine(graphdef, tx, aggregator, settings, estimator=estimator,
                       grader=source.grade, estimator_hparams=estimator_hparams)
  state = init_train_state(params, tx, aggregator, num_prompts=source.num_prompts,
                           max_criteria=source.max_criteria, rng=jax.random.key(config.seed + 1))
  return Setup(config, source, graphdef, engine, state, settings, losses, jax.jit(source.grade))
