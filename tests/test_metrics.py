"""Evaluation metrics: hand-computed goldens, HealthBench scoring, invariances."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from focal.metrics import evaluation as metrics_lib
from focal.rubric import RubricBatch

C = 4


@functools.lru_cache(maxsize=None)
def jitted_metrics(num_categories, with_weights):
  if with_weights:
    return jax.jit(lambda s, v, r, w: metrics_lib.compute_metrics(s, v, r, num_categories, w))
  return jax.jit(lambda s, v, r: metrics_lib.compute_metrics(s, v, r, num_categories))


def metrics(scores, valid, rubric, weights=None, num_categories=C):
  args = (jnp.asarray(scores, jnp.float32), jnp.asarray(valid, bool), rubric)
  if weights is not None:
    out = jitted_metrics(num_categories, True)(*args, jnp.asarray(weights, jnp.float32))
  else:
    out = jitted_metrics(num_categories, False)(*args)
  return {k: np.asarray(v) for k, v in out.items()}


def fixture():
  """Three prompts, G = 4, K = 4 slots, C = 4 categories (category 3 empty).

  Prompt 0: c0 w=2 cat0 required = [1, 1, 0, 0]; c1 w=-1 cat1 pitfall, always
    hit = [1, 1, 1, 1] (dead); c2 w=1 cat0 = [1, 0, 0, 0]; slot 3 padding.
  Prompt 1 (nothing required, so all are strict targets): c0 w=3 cat2
    = [1, 1, 1, -]; c1 w=1 cat0 = [0, 1, 0, -]; rollout 3 has no valid verdict.
  Prompt 2: c0 w=1 cat1 required = [1, 1, 1, 1]: a single-criterion prompt
    whose group has zero variance.
  Padding slots hold junk verdicts marked valid: they must not count.
  """
  rubric = RubricBatch.from_lists([
      [{"weight": 2, "category": 0, "required": True}, {"weight": -1, "category": 1},
       {"weight": 1, "category": 0}],
      [{"weight": 3, "category": 2}, {"weight": 1, "category": 0}],
      [{"weight": 1, "category": 1, "required": True}],
  ], max_criteria=4)
  scores = np.ones((3, 4, 4), np.float32)
  valid = np.ones((3, 4, 4), bool)
  scores[0, :, 0] = [1, 1, 0, 0]
  scores[0, :, 2] = [1, 0, 0, 0]
  scores[1, :, 1] = [0, 1, 0, 0]
  valid[1, 3] = False
  return scores, valid, rubric


def test_golden_metrics():
  m = metrics(*fixture())
  # Static signed score: prompt 0 (2 s0 - s1 + s2) / 3 = [2/3, 1/3, -1/3, -1/3];
  # prompt 1 (3 s0 + s1) / 4 = [3/4, 1, 3/4]; prompt 2 [1, 1, 1, 1].
  assert m["mean_reward_pct"] == pytest.approx(100 * (1 / 3 + 2.5 + 4) / 11, rel=1e-5)
  # Group stds: sqrt(3)/4, sqrt(1/72), 0.
  assert m["zero_variance_group_share"] == pytest.approx(1 / 3)
  assert m["static_reward_group_std"] == pytest.approx(
      (math.sqrt(3) / 4 + math.sqrt(1 / 72)) / 3, rel=1e-5)
  # Strict: prompt 0 needs c0 [1, 1, 0, 0]; prompt 1 needs both [0, 1, 0];
  # prompt 2 needs c0 [1, 1, 1, 1]; prompt 1's rollout 3 is not judged.
  assert m["strict_completion"] == pytest.approx(7 / 11)
  assert m["strict_judged"] == 11
  # Passes (a pitfall passes when avoided): cat0 = p0c0 2/4 + p0c2 1/4 + p1c1 1/3,
  # cat1 = p0c1 0/4 + p2c0 4/4, cat2 = p1c0 3/3, cat3 empty.
  np.testing.assert_allclose(m["category_pass_rate"], [4 / 11, 4 / 8, 1, 0], rtol=1e-6)
  np.testing.assert_array_equal(m["category_count"], [11, 8, 3, 0])
  assert m["worst_category_pass_rate"] == pytest.approx(4 / 11)
  assert m["best_category_pass_rate"] == pytest.approx(1.0)
  assert m["polarization"] == pytest.approx(7 / 11)
  np.testing.assert_allclose(m["criterion_pass_rate"],
                             [[0.5, 0, 0.25, 0], [1, 1 / 3, 0, 0], [1, 0, 0, 0]], rtol=1e-6)
  np.testing.assert_array_equal(m["criterion_count"], [[4, 4, 4, 0], [3, 3, 0, 0], [4, 0, 0, 0]])
  np.testing.assert_allclose(m["slot_pass_rate"], [9 / 11, 1 / 7, 1 / 4, 0], rtol=1e-6)
  np.testing.assert_array_equal(m["slot_count"], [11, 7, 4, 0])
  # Six judged criteria: p1c0 and p2c0 saturated, p0c1 dead.
  assert m["saturated_share"] == pytest.approx(2 / 6)
  assert m["dead_share"] == pytest.approx(1 / 6)
  # Zero raw-verdict variance: p0c1, p1c0, p2c0.
  assert m["zero_signal_share"] == pytest.approx(3 / 6)
  # Category-balanced coefficients: p0 [1/3, 1/2, 1/6] (c1 silent: 1/2),
  # p1 [1/2, 1/2] (c0 silent: 1/2), p2 [1] (silent: 1).
  assert m["zero_signal_pressure"] == pytest.approx(2 / 3)
  assert all(np.all(np.isfinite(v)) for v in m.values())


def test_pressure_uses_given_weights():
  weights = [[0.6, -0.1, 0.3, 0], [0.8, 0.2, 0, 0], [1, 0, 0, 0]]
  m = metrics(*fixture(), weights=weights)
  assert m["zero_signal_pressure"] == pytest.approx((0.1 + 0.8 + 1) / 3)


def test_default_coefficients_are_category_balanced():
  _, _, rubric = fixture()
  np.testing.assert_allclose(metrics_lib.default_coefficients(rubric),
                             [[1 / 3, 1 / 2, 1 / 6, 0], [1 / 2, 1 / 2, 0, 0], [1, 0, 0, 0]],
                             rtol=1e-6)


def test_all_invalid_is_nan_free():
  scores, valid, rubric = fixture()
  m = metrics(scores, np.zeros_like(valid), rubric)
  assert all(np.all(np.isfinite(v)) for v in m.values())
  assert m["mean_reward_pct"] == 0 and m["strict_judged"] == 0
  np.testing.assert_array_equal(m["category_count"], 0)
  assert m["worst_category_pass_rate"] == 0 and m["polarization"] == 0


# ----------------------------------------------------------------------------
# HealthBench official scoring.
# ----------------------------------------------------------------------------


def healthbench_fixture():
  """Two prompts, G = 2, HealthBench signed points, 3 categories.

  Prompt 0: c0 +5 cat0, c1 +3 cat1, c2 -4 cat1 (pitfall).
    rollout 0 meets all: (5 + 3 - 4) / 8 = 1/2; rollout 1 meets only the
    pitfall: -4/8 = -1/2 (negative, not clipped).
  Prompt 1: c0 +2 cat0, c1 -1 cat2 (cat2 has no positive points).
    rollout 0 meets c0: 2/2 = 1; rollout 1 meets both: 1/2.
  """
  rubric = RubricBatch.from_lists([
      [{"weight": 5, "category": 0}, {"weight": 3, "category": 1}, {"weight": -4, "category": 1}],
      [{"weight": 2, "category": 0}, {"weight": -1, "category": 2}],
  ], pitfall_mode="signed")
  scores = np.zeros((2, 2, 3), np.float32)
  scores[0, 0] = [1, 1, 1]
  scores[0, 1] = [0, 0, 0.9]
  scores[1, 0] = [1, 0.2, 0]
  scores[1, 1] = [1, 1, 0]
  return scores, np.ones((2, 2, 3), bool), rubric


def healthbench(scores, valid, rubric):
  out = metrics_lib.healthbench_score(jnp.asarray(scores), jnp.asarray(valid), rubric, 3)
  return {k: np.asarray(v) for k, v in out.items()}


def test_healthbench_golden():
  h = healthbench(*healthbench_fixture())
  np.testing.assert_allclose(h["healthbench_example_scores"], [[0.5, -0.5], [1, 0.5]])
  assert h["healthbench_score"] == pytest.approx(1.5 / 4)
  assert h["healthbench_examples"] == 4
  # cat0: p0 [5/5, 0/5], p1 [2/2, 2/2] -> 3/4. cat1: p0 only, [(3-4)/3, -4/3]
  # -> mean -5/6, clipped to 0. cat2: no positive points anywhere: skipped.
  np.testing.assert_allclose(h["healthbench_category_score"], [0.75, 0, 0], atol=1e-6)
  np.testing.assert_array_equal(h["healthbench_category_count"], [4, 2, 0])


def test_healthbench_clips_only_the_mean():
  scores, valid, rubric = healthbench_fixture()
  scores[:, :, :] = 0
  scores[0, :, 2] = 1  # both rollouts of prompt 0 hit the pitfall: -1/2 each
  h = healthbench(scores, valid, rubric)
  np.testing.assert_allclose(h["healthbench_example_scores"], [[-0.5, -0.5], [0, 0]])
  assert h["healthbench_score_unclipped"] == pytest.approx(-0.25)
  assert h["healthbench_score"] == 0.0


def test_healthbench_invalid_verdict_dropped():
  scores, valid, rubric = healthbench_fixture()
  valid[0, 1, 2] = False  # rollout 1 of prompt 0 then scores 0/8
  h = healthbench(scores, valid, rubric)
  np.testing.assert_allclose(h["healthbench_example_scores"], [[0.5, 0], [1, 0.5]])
  assert h["healthbench_score"] == pytest.approx(0.5)


def test_healthbench_pitfall_only_example_skipped():
  scores, valid, rubric = healthbench_fixture()
  valid[1, 0, 0] = False  # prompt 1 rollout 0 keeps only its pitfall
  h = healthbench(scores, valid, rubric)
  assert h["healthbench_examples"] == 3
  assert h["healthbench_example_scores"][1, 0] == 0.0  # skipped: reported as 0
  assert h["healthbench_score"] == pytest.approx((0.5 - 0.5 + 0.5) / 3)


def test_a_verdict_exactly_on_the_threshold_is_met_everywhere():
  # One required criterion (w = 2) and a pitfall (w = -1); verdicts exactly 0.5 count as met.
  rubric = RubricBatch.from_lists([[{"weight": 2, "required": True}, {"weight": -1}]])
  scores = jnp.float32([[[0.5, 0.0], [0.5, 0.5]]])
  valid = jnp.ones((1, 2, 2), bool)
  m = metrics(scores, valid, rubric)  # jitted, shared (jit == eager: test_jit_equals_eager)
  assert float(m["strict_completion"]) == 1.0  # only the required criterion is a target
  np.testing.assert_allclose(m["criterion_pass_rate"][0], [1.0, 0.5])
  h = healthbench(np.asarray(scores), np.asarray(valid), rubric)
  np.testing.assert_allclose(h["healthbench_example_scores"], [[1.0, 0.5]])


def test_healthbench_counts_an_example_with_a_single_positive_point():
  # Points [1, -1]: the positive mass is 1, enough to count; meeting only c0 scores 1/1.
  rubric = RubricBatch.from_lists([[{"weight": 1}, {"weight": -1}]], pitfall_mode="signed")
  h = healthbench(np.float32([[[1, 0], [1, 1]]]), np.ones((1, 2, 2), bool), rubric)
  assert h["healthbench_examples"] == 2
  np.testing.assert_allclose(h["healthbench_example_scores"], [[1.0, 0.0]])


# ----------------------------------------------------------------------------
# steps_to_threshold.
# ----------------------------------------------------------------------------


def test_steps_to_threshold():
  steps = [0, 10, 20, 30]
  values = [0.1, float("nan"), 0.55, 0.5]
  out = metrics_lib.steps_to_threshold(steps, values, [0.1, 0.5, 0.55, 0.9])
  assert out == {0.1: 0, 0.5: 20, 0.55: 20, 0.9: None}
  assert metrics_lib.steps_to_threshold([], [], [0.5]) == {0.5: None}
  with pytest.raises(ValueError):
    metrics_lib.steps_to_threshold([0, 1], [0.5], [0.5])


# ----------------------------------------------------------------------------
# Properties.
# ----------------------------------------------------------------------------

B, G, K, PAD = 3, 4, 5, 2
SCALAR_KEYS = ("mean_reward_pct", "strict_completion", "strict_judged", "worst_category_pass_rate",
               "best_category_pass_rate", "polarization", "saturated_share", "dead_share",
               "zero_variance_group_share", "static_reward_group_std", "zero_signal_share",
               "zero_signal_pressure", "category_pass_rate", "category_count")


def random_problem(seed):
  rng = np.random.default_rng(seed)
  n_real = rng.integers(1, K + 1, B)
  mask = np.arange(K)[None] < n_real[:, None]
  weights = rng.choice([-2.0, -1.0, 1.0, 2.0, 3.0, 5.0], (B, K)) * mask
  categories = rng.integers(0, C, (B, K)) * mask
  required = rng.random((B, K)) < 0.4
  scores = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], (B, G, K)).astype(np.float32)
  valid = rng.random((B, G, K)) < 0.85
  return scores, valid, RubricBatch.from_arrays(weights, categories, required, mask, np.arange(B))


def rebuild(scores, valid, rubric, f):
  return (f(scores), f(valid), RubricBatch.from_arrays(
      f(rubric.weights), f(rubric.categories), f(rubric.required), f(rubric.mask), np.arange(B)))


SETTINGS = settings(max_examples=25, deadline=None)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_padding_invariance(seed):
  scores, valid, rubric = random_problem(seed)
  rng = np.random.default_rng(seed + 1)
  cat = lambda a, b: np.concatenate([np.asarray(a), b], -1)
  padded = (cat(scores, rng.random((B, G, PAD)).astype(np.float32)),
            cat(valid, rng.random((B, G, PAD)) < 0.5),
            RubricBatch.from_arrays(cat(rubric.weights, rng.normal(size=(B, PAD))),
                                    cat(rubric.categories, rng.integers(0, C, (B, PAD))),
                                    cat(rubric.required, np.ones((B, PAD), bool)),
                                    cat(rubric.mask, np.zeros((B, PAD), bool)), np.arange(B)))
  a, b = metrics(scores, valid, rubric), metrics(*padded)
  for k in SCALAR_KEYS:
    np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
  np.testing.assert_allclose(a["criterion_pass_rate"], b["criterion_pass_rate"][:, :K], atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), data=st.data())
def test_criterion_permutation_invariance(seed, data):
  problem = random_problem(seed)
  perm = np.array(data.draw(st.permutations(range(K))))
  a = metrics(*problem)
  b = metrics(*rebuild(*problem, lambda x: np.asarray(x)[..., perm]))
  for k in SCALAR_KEYS:
    np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
  np.testing.assert_allclose(a["criterion_pass_rate"][:, perm], b["criterion_pass_rate"],
                             atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_ranges(seed):
  m = metrics(*random_problem(seed))
  for k, v in m.items():
    assert np.all(np.isfinite(v)), k
  for k in ("strict_completion", "saturated_share", "dead_share", "zero_variance_group_share",
            "zero_signal_share", "zero_signal_pressure", "polarization"):
    assert 0 <= m[k] <= 1 + 1e-6, k
  assert -100 - 1e-4 <= m["mean_reward_pct"] <= 100 + 1e-4
  assert m["saturated_share"] + m["dead_share"] <= 1 + 1e-6


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_jit_equals_eager(seed):
  scores, valid, rubric = random_problem(seed)
  a = metrics(scores, valid, rubric)
  b = metrics_lib.compute_metrics(jnp.asarray(scores), jnp.asarray(valid), rubric, C)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
  h_jit = jax.jit(metrics_lib.healthbench_score, static_argnums=3)(scores, valid, rubric, C)
  h_eager = metrics_lib.healthbench_score(scores, valid, rubric, C)
  for k in h_jit:
    np.testing.assert_allclose(h_jit[k], h_eager[k], atol=1e-5, err_msg=k)
