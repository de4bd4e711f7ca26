"""The metrics of one GRPO iteration, computed inside the jitted step (see focal.loop for the
logged keys)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from focal.decode_plan import stop_array
from focal.rubric import RubricBatch, passes


def token_mean(values, mask):
  """Mean of [N, L] `values` over the real tokens of `mask` [N, L] (0 when there is none)."""
  m = mask.astype(jnp.float32)
  return jnp.sum(values * m) / jnp.maximum(jnp.sum(m), 1.0)


def clipped_ratio(rollouts, max_new_tokens: int, eos_id) -> jax.Array:
  """Share of rollouts cut off at `max_new_tokens` before a stop token (TRL's
  completions/clipped_ratio). A rollout whose last allowed token is a stop token ended."""
  full = jnp.sum(rollouts.mask, -1) >= max_new_tokens
  stopped = jnp.any(rollouts.tokens[:, -1:] == stop_array(eos_id)[None, :], -1)
  return jnp.mean(full & ~stopped)


def step_metrics(rewards, scores, valid, rubric: RubricBatch, rollouts, agg_metrics: dict,
                 adv_metrics: dict, inner: dict, settings) -> dict:
  """Scalars and [K] vectors to log; per-slot means are over prompts that use the slot.
  `rollouts`: focal.iteration.Rollouts; `settings`: focal.iteration.GRPOSettings."""
  real = rubric.mask[:, None, :] & valid
  passed = passes(scores, rubric) & real
  slot_count = jnp.maximum(jnp.sum(real, (0, 1)), 1)
  slot_used = jnp.maximum(jnp.sum(rubric.mask, 0), 1)
  metrics = {
      # The exact scalar GRPO optimised this step (the aggregator's output).
      "reward_mean": jnp.mean(rewards),
      "reward_std": jnp.mean(jnp.std(rewards, axis=-1)),
      "response_length": jnp.mean(jnp.sum(rollouts.mask, -1)),
      "clipped_ratio": clipped_ratio(rollouts, settings.max_new_tokens, settings.eos_id),
      # An exact count (the loop sums it into train/tokens_seen; not a row key itself).
      "response_tokens": jnp.sum(rollouts.mask, dtype=jnp.int32),
      "criterion_pass_rate": jnp.sum(passed, (0, 1)) / slot_count,
      "aggregator_weight": jnp.sum(agg_metrics["weights"], 0) / slot_used,
      "invalid_verdict_frac": agg_metrics["invalid_verdict_frac"],
      "rollouts_without_valid": agg_metrics["rollouts_without_valid"],
  }
  # Per-prompt [B, K] arrays: the host names slots per task (slot k differs across tasks).
  metrics["prompt_pass_rate"] = jnp.sum(passed, 1) / jnp.maximum(jnp.sum(real, 1), 1)
  metrics["prompt_weight"] = agg_metrics["weights"]
  if "factors" in agg_metrics:
    metrics["aggregator_factor"] = jnp.sum(agg_metrics["factors"] * rubric.mask, 0) / slot_used
    metrics["prompt_factor"] = agg_metrics["factors"]
  # The estimator's own count of groups it zeroed (each estimator has its own rule: reward
  # std for GRPO, every criterion's std for GDPO/DVAO/SA-MRPO).
  metrics.update(adv_metrics)
  for key, value in inner.items():  # averaged over the mu x mini-batch updates
    metrics[key] = jnp.mean(value)
  return metrics
