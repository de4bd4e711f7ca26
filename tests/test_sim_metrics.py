"""Exact metrics of a simulated policy (focal/sim/metrics.py) and the statistics (stats.py)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.sim import base
from focal.metrics.evaluation import compute_metrics
from focal.sim import components, judge, policy, stats
from focal.sim.knobs import make_knobs
from focal.sim.metrics import expected_metrics
from focal.sim.population import make_population
from focal.sim.world import make_world, raw_pass_prob

P, K, M, G = 24, 12, 20, 3000


@pytest.fixture(scope="module")
def sampled_and_exact():
  pop = make_population("healthbench")
  knobs = make_knobs({**components.knob_values(base.get_config()), "conflict": 0.5,
                      "saturated_level": 1.0, "init_logit_std": 1.5}, K)

  def both(key):
    k_world, k_types, k_judge = jax.random.split(key, 3)
    world = make_world(k_world, knobs, pop, P, K, M, 4)
    u = jax.random.uniform(k_types, (P, G))
    types = policy.sample_types(u, world.init_logits)
    bounds = judge.verdict_bounds(raw_pass_prob(world), 0.0, 0.0)   # the evaluation judge
    words = jax.random.bits(k_judge, (2,), jnp.uint32)
    scores, valid = judge.judge(words, bounds, types)
    sampled = compute_metrics(scores, valid, world.rubric, pop.num_categories)
    return sampled, expected_metrics(world.init_logits, world, pop.num_categories, G)

  return jax.device_get(jax.jit(both)(jax.random.key(3)))


@pytest.mark.parametrize("key,tol", [("mean_reward_pct", 0.5), ("strict_completion", 0.01),
                                     ("worst_category_pass_rate", 0.01),
                                     ("best_category_pass_rate", 0.01), ("polarization", 0.015),
                                     ("saturated_share", 1e-3), ("dead_share", 1e-3)])
def test_exact_metrics_match_focal_metrics_on_a_large_sample(sampled_and_exact, key, tol):
  """The closed forms agree with METHODS §7 metrics measured on G=3000 noise-free verdicts.

  With G this large a group passes all (none) of its verdicts only when the
  pass probability is 1 (0), which pass^G reproduces up to float rounding of a
  probability summed to 1 - 1e-7 (the shares move in steps of 1/280 criteria).
  """
  sampled, exact = sampled_and_exact
  assert abs(float(sampled[key]) - float(exact[key])) <= tol, (sampled[key], exact[key])


def test_exact_category_rates_match(sampled_and_exact):
  sampled, exact = sampled_and_exact
  np.testing.assert_array_equal(sampled["category_count"] > 0, exact["category_count"] > 0)
  np.testing.assert_allclose(sampled["category_pass_rate"], exact["category_pass_rate"],
                             atol=0.01)


# ----------------------------------------------------------------------------
# Statistics, by hand.
# ----------------------------------------------------------------------------

def test_mean_interval_by_hand():
  iv = stats.mean_interval([1.0, 2.0, 3.0, 4.0, float("nan")])
  half = 3.182446 * math.sqrt(5 / 3) / 2          # t_{0.975, 3} * sd / sqrt(n)
  assert iv.n == 4 and iv.mean == 2.5
  assert iv.lo == pytest.approx(2.5 - half, rel=1e-5) and iv.hi == pytest.approx(2.5 + half,
                                                                                  rel=1e-5)
  assert iv.excludes_zero and not stats.mean_interval([-1.0, 1.0]).excludes_zero
  assert stats.paired_gain([3.0, 4.0], [1.0, 1.0]).mean == 2.5


def test_steps_to_plateau_share_and_speedup():
  steps = np.array([0, 10, 20, 30])
  reference = np.array([[0.0, 5.0, 9.0, 10.0], [0.0, 2.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
  targets = stats.plateau_targets(reference, 0.9)
  np.testing.assert_allclose(targets, [9.0, 3.6, np.nan])    # no gain: no target
  ref_steps = stats.first_crossing(reference, steps, targets)
  np.testing.assert_array_equal(ref_steps, [20.0, 20.0, np.nan])
  method = np.array([[0.0, 9.5, 9.9, 9.9], [0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 2.0, 2.0]])
  method_steps = stats.first_crossing(method, steps, targets)
  np.testing.assert_array_equal(method_steps, [10.0, np.inf, np.nan])
  assert stats.reached_share(method_steps) == 0.5
  # Seed 0: 20/10 = 2x; seed 1 never reaches, counted at the horizon 40: 20/40 = 0.5x.
  iv = stats.speedup(ref_steps, method_steps, horizon=40.0)
  assert iv.n == 2 and iv.mean == pytest.approx(1.0)
