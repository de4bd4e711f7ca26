"""The simulated policy: a categorical over M latent response types per prompt.

  logits[p] = init_logits[p] + (1 - s) table[p] + s (features[p] @ shared + c bias),
  s = policy_sharing, c = policy_bias

`table [P, M]` is a free (tabular) logit offset per prompt; `shared [F, M]` a
linear map of prompt features common to all prompts, so that what is learned on
one prompt moves the others (as a language model's shared weights do); `bias
[M]` a shared offset per type, a constant feature (c = 0: none, the map alone
cannot prefer a type on every prompt, since the features are centred). All
start at 0, so the initial policy is the world's `init_logits`. A held-out
prompt was never trained on: its table row is 0, and only `shared` moves it.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from focal.sim.knobs import Knobs
from focal.sim.world import World


class PolicyParams(NamedTuple):
  table: Any   # [P, M] per-prompt logit offsets
  shared: Any  # [F, M] shared linear map of prompt features
  bias: Any    # [M] shared offset per type (scaled by the policy_bias knob)


def init_params(num_prompts: int, num_types: int, num_features: int) -> PolicyParams:
  return PolicyParams(table=jnp.zeros((num_prompts, num_types), jnp.float32),
                      shared=jnp.zeros((num_features, num_types), jnp.float32),
                      bias=jnp.zeros((num_types,), jnp.float32))


def _shared_logits(params: PolicyParams, world: World, knobs: Knobs):
  return world.features @ params.shared + knobs.policy_bias * params.bias


def policy_logits(params: PolicyParams, world: World, knobs: Knobs):
  """[P, M] logits of the current policy."""
  s = knobs.policy_sharing
  return world.init_logits + (1.0 - s) * params.table + s * _shared_logits(params, world, knobs)


def heldout_logits(params: PolicyParams, world: World, knobs: Knobs):
  """[P', M] logits on prompts outside training (`world` holds the held-out prompts)."""
  return world.init_logits + knobs.policy_sharing * _shared_logits(params, world, knobs)


def sample_types(u, logits):
  """[P, G] int32 types drawn from softmax(logits [P, M]) with uniforms u [P, G], by the CDF.

  One uniform per rollout instead of the Gumbel trick's M: the CDF is compared
  against the first M - 1 boundaries, so rounding in the last one cannot push a
  sample out of range, and a type with zero probability is never drawn.
  """
  cdf = jnp.cumsum(jax.nn.softmax(logits, -1), -1)[:, None, :-1]
  return jnp.sum(u[..., None] >= cdf, -1).astype(jnp.int32)


def type_logprobs(logits, types):
  """[P, G] log pi(type) of the sampled types."""
  return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), types, axis=1)
