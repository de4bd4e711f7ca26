"""METHODS §7 metrics of a simulated policy, computed exactly instead of sampled.

Given the type probabilities pi [P, M] and the world's table, every held-out
metric of `focal.metrics.compute_metrics` has a closed form for a noise-free
judge that always answers (the evaluation judge), so the curves carry no
evaluation noise. Names follow `focal.metrics` (tests/test_sim_metrics.py
checks the two against each other on a large sample):

  mean_reward_pct: 100 * mean_p sum_k w_k P(met_k) / sum_{w>0} w (signed, HealthBench).
  strict_completion: mean_p sum_m pi_m prod_{k strict target} S[m, k].
  category_pass_rate [C]: satisfaction probability pooled over (prompt, criterion);
    0 for an empty category.
  category_count [C]: real criteria per category.
  worst/best_category_pass_rate, polarization: over non-empty categories.
  saturated_share, dead_share: expected share of real criteria whose G-rollout
    group passes all / none, mean of pass^G and (1 - pass)^G.
Plus, for the simulator's own reading:
  class_pass_rate [4]: mean satisfaction probability per difficulty class
    (world.CLASS_NAMES; 0 where a class is empty).
  class_count [4]: real criteria per class.
  entropy: mean policy entropy over prompts (nats).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from focal.rubric import safe_div, strict_targets
from focal.sim.world import CLASS_NAMES, World


def satisfaction_prob(probs, world: World):
  """[P, K] P(a response satisfies criterion k) under type probabilities [P, M]."""
  return jnp.einsum("pm,pmk->pk", probs, world.satisfy)


def _pooled_rates(values, groups, mask, num_groups: int):
  """Mean of values [P, K] per group id in [0, num_groups) over real slots; (rates, counts)."""
  onehot = jax.nn.one_hot(groups, num_groups, dtype=jnp.float32) * mask[..., None]
  total = jnp.einsum("pk,pkc->c", values, onehot)
  count = jnp.sum(onehot, (0, 1))
  return safe_div(total, count), count


def expected_metrics(logits, world: World, num_categories: int, group_size: int) -> dict:
  """The module docstring's metrics of the policy softmax(logits [P, M])."""
  probs = jax.nn.softmax(logits, -1)
  rubric = world.rubric
  mask = rubric.mask
  sat = satisfaction_prob(probs, world)
  pitfall = rubric.weights < 0
  met = jnp.where(pitfall, 1.0 - sat, sat) * mask
  w = rubric.weights * mask
  reward = safe_div(jnp.sum(w * met, -1), jnp.sum(jnp.maximum(w, 0.0), -1))
  target = strict_targets(rubric)[:, None, :]
  strict = jnp.sum(probs * jnp.prod(jnp.where(target, world.satisfy, 1.0), -1), -1)
  cat_rate, cat_count = _pooled_rates(sat, rubric.categories, mask, num_categories)
  nonempty = cat_count > 0
  worst = jnp.min(jnp.where(nonempty, cat_rate, jnp.inf))
  best = jnp.max(jnp.where(nonempty, cat_rate, -jnp.inf))
  class_rate, class_count = _pooled_rates(sat, world.classes, mask, len(CLASS_NAMES))
  n_real = jnp.sum(mask).astype(jnp.float32)
  return {
      "mean_reward_pct": 100.0 * jnp.mean(reward),
      "strict_completion": jnp.mean(strict),
      "category_pass_rate": cat_rate,
      "category_count": cat_count,
      "worst_category_pass_rate": worst,
      "best_category_pass_rate": best,
      "polarization": best - worst,
      "saturated_share": jnp.sum(jnp.power(sat, group_size) * mask) / n_real,
      "dead_share": jnp.sum(jnp.power(1.0 - sat, group_size) * mask) / n_real,
      "class_pass_rate": class_rate,
      "class_count": class_count,
      "entropy": -jnp.mean(jnp.einsum("pm,pm->p", probs, jax.nn.log_softmax(logits, -1))),
  }
