"""A run's first TrainState and what it is made of beyond the policy: the LoRA adapters on
the policy, how the reference policy is kept, and the devices a step's rows are split over."""
from __future__ import annotations

import jax

from focal import policy
from focal.iteration import GRPOSettings, init_train_state


def batch_shards(config) -> int:
  """The devices a step's rows are split over: data x fsdp of `mesh.shape`."""
  shape = tuple(int(x) for x in config.mesh.shape)
  return shape[0] * shape[1]


def reference_fields(config, settings: GRPOSettings) -> dict:
  """How the run keeps its reference policy: not at all with beta = 0 (nothing reads it), else
  in the compute dtype (the reference pass casts its weights to it anyway)."""
  return {"reference": settings.beta > 0, "ref_dtype": policy.model_fields(config)["dtype"]}


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

