"""What a benchmark times, built by the training loop's own builders (focal.components).

A run builds its engine and first state in `components.build`: the GRPO settings from
`config.grpo`, the optimizer from `config.optimizer`, the aggregator and the advantage
estimator from their blocks, the engine with the run's batch shards, the state with a
reference copy only when beta > 0. Benchmarks that time a run on the synthetic suite call
`components.build` itself; those that bring a model, grader or prompts of their own (the
vs_peers shapes, rollouts forced to full length) build them with `engine_for`, which runs the
same builders after the data source and the policy, so they time the engine that a run of
their config runs.
"""
from __future__ import annotations

import types
from typing import Any, NamedTuple

import jax

from configs import base
from focal import components, policy, state_init
from focal.graders.stage import InJitGrader
from focal.models.transformer import init_model


def run_config(**fields) -> Any:
  """configs/base.py with `fields` replaced, named by their dotted path with '__' for '.'
  (`grpo__beta=0.0`), as `--config.grpo.beta=0.0` would."""
  c = base.get_config()
  for path, value in fields.items():
    *parents, leaf = path.split("__")
    block = c
    for name in parents:
      block = block[name]
    if leaf not in block:
      raise KeyError(f"configs/base.py has no field {'.'.join([*parents, leaf])}")
    block[leaf] = value
  return c


def model_for(config, width: int):
  """The ModelConfig a run of `config` builds for prompts `width` tokens wide
  (`policy.model_config`: the scale, its context sized for the prompts and the responses)."""
  return policy.model_config(config, types.SimpleNamespace(width=width),
                             config.grpo.max_new_tokens)


class Built(NamedTuple):
  settings: Any    # focal.iteration.GRPOSettings
  graphdef: Any
  engine: Any      # focal.iteration.Engine: rollout_step, learn_step, train_step
  state: Any       # the first TrainState
  aggregator: Any
  tx: Any


def engine_for(config, model_cfg, grade, *, num_prompts: int, max_criteria: int, eos_id,
               pad_id: int) -> Built:
  """What `components.build` makes for `config` after its data source and policy, on a model of
  `model_cfg` initialised from `config.seed` and a jittable `grade(features [N, F], tokens
  [N, L], mask [N, L]) -> scores [N, K]` fused into the step (grader.kind=programmatic).
  `eos_id` None forces every response to full length."""
  settings = components.grpo_settings(config, eos_id, pad_id)
  graphdef, params = init_model(model_cfg, jax.random.key(config.seed))
  graphdef, frozen, params = state_init.attach_adapters(config, graphdef, params)
  grader = InJitGrader(types.SimpleNamespace(grade=grade))
  tx, aggregator, engine = components.run_engine(config, graphdef, settings, grader)
  state = state_init.initial_state(config, settings, params, tx, aggregator, num_prompts,
                                   max_criteria, frozen)
  return Built(settings, graphdef, engine, state, aggregator, tx)
