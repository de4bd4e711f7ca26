"""POW3R (METHODS §3): golden values, reference agreement, invariances, multi-step factor dynamics."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adaptive_reference import pow3r_reference, random_batch
from focal.aggregators import make
from focal.aggregators.pow3r import Pow3rState
from focal.rubric import RubricBatch

B, G, K, P = 4, 6, 7, 10
SETTINGS = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)

POW3R = make("pow3r")
UPDATE = jax.jit(POW3R.update)
CAT_BALANCED = jax.jit(make("category_balanced").update)


def _random_alpha(rng, p=P, k=K):
  return np.float32(rng.uniform(0.67, 1.5, size=(p, k)))


# ----------------------------------------------------------------------------
# Golden values, by hand.
# ----------------------------------------------------------------------------

# One prompt, 5 real criteria + 1 padding slot:
#   j0 w=3 cat0, j1 w=-2 cat0 (pitfall), j2 w=1 cat1, j3 w=2 cat1, j4 w=4 cat2 (alone).
GOLDEN_W = [[3.0, -2.0, 1.0, 2.0, 4.0, 0.0]]
GOLDEN_CAT = [[0, 0, 1, 1, 2, 0]]
GOLDEN_MASK = [[True, True, True, True, True, False]]
# Raw verdicts (the pitfall's column is flipped to 1 - s for training).
GOLDEN_S = [[[1, 0, 1, 0, 1, 1],
             [1, 1, 0, 0, 1, 0],
             [1, 0, 1, 1, 1, 1],
             [1, 0, 0, 0, 1, 0]]]
GOLDEN_VALID = np.ones((1, 4, 6), bool)
GOLDEN_VALID[0, 3, 2] = False  # the judge failed on j2 for rollout 3.


def _golden():
  rubric = RubricBatch.from_arrays(GOLDEN_W, GOLDEN_CAT, np.zeros((1, 6), bool), GOLDEN_MASK, [0])
  return jnp.float32(GOLDEN_S), jnp.asarray(GOLDEN_VALID), rubric


def test_golden_first_visit_rewards_and_factors():
  scores, valid, rubric = _golden()
  rewards, state, metrics = UPDATE(scores, valid, rubric, POW3R.init(1, 6))
  # Flipped pitfall column: [1, 0, 1, 1]. Categories: {j0, j1} W=5, {j2, j3} W=3, {j4} W=4.
  cat0 = [(3 + 2) / 5, 3 / 5, 1.0, 1.0]
  cat1 = [1 / 3, 0.0, 1.0, 0.0 / 2]  # rollout 3: j2 invalid, so W = 2 and s3 = 0.
  cat2 = [1.0] * 4
  expected = [(a + b + c) / 3 for a, b, c in zip(cat0, cat1, cat2)]
  np.testing.assert_allclose(rewards[0], expected, atol=1e-6)

  # Factors: j2 has 3 valid verdicts = ceil(0.75 * 4), so it updates.
  g0 = math.sqrt(0.0 + 1e-4)         # j0 all pass.
  g1 = math.sqrt(0.1875 + 1e-4)      # flipped j1 [1, 0, 1, 1]: p = .75.
  g2 = math.sqrt(2 / 9 + 1e-4)       # j2 [1, 0, 1]: p = 2/3.
  g3 = math.sqrt(0.1875 + 1e-4)      # j3 [0, 0, 1, 0]: p = .25.
  gbar0 = (3 * g0 + 2 * g1) / 5
  gbar1 = (1 * g2 + 2 * g3) / 3
  clip = lambda x: min(max(x, 0.67), 1.5)
  ahat = [clip(0.5 + 0.5 * g0 / gbar0), clip(0.5 + 0.5 * g1 / gbar0),
          clip(0.5 + 0.5 * g2 / gbar1), clip(0.5 + 0.5 * g3 / gbar1),
          1.0]  # j4: its category has no contrast.
  alpha = [clip(0.8 + 0.2 * a) for a in ahat] + [1.0]
  np.testing.assert_allclose(metrics["factors"][0], alpha, atol=1e-6)
  np.testing.assert_allclose(state.alpha[0], alpha, atol=1e-6)

  # Metrics: j0 and j4 saturated of 5 judged criteria, none dead.
  np.testing.assert_allclose(metrics["saturated_frac"], 2 / 5, atol=1e-6)
  np.testing.assert_allclose(metrics["dead_frac"], 0.0)
  # Coefficients with all verdicts: c_j = w_j / (W_k * 3).
  coef = [3 / 15, 2 / 15, 1 / 9, 2 / 9, 1 / 3, 0.0]
  np.testing.assert_allclose(metrics["weights"][0], coef, atol=1e-6)
  np.testing.assert_allclose(metrics["pressure_zero_signal"], 3 / 15 + 1 / 3, atol=1e-6)

  # Second visit: the rewards use the factors just learned (w~ = w alpha).
  rewards2, _, _ = UPDATE(scores, valid, rubric, state)
  wt = [w * a for w, a in zip([3, 2, 1, 2, 4], alpha)]
  s0 = [1, 1, 1, 0, 1]  # rollout 0, flipped
  r0 = ((wt[0] * s0[0] + wt[1] * s0[1]) / (wt[0] + wt[1])
        + (wt[2] * s0[2] + wt[3] * s0[3]) / (wt[2] + wt[3]) + 1.0) / 3
  np.testing.assert_allclose(rewards2[0, 0], r0, atol=1e-6)


def test_a_criterion_without_any_valid_verdict_is_absent_from_the_diagnostics():
  # Two criteria in two categories: weights [.5, .5]. c0 splits the group; c1 has no valid
  # verdict at all, so it is not zero-signal (nor saturated, nor dead): it is absent.
  rubric = RubricBatch.from_arrays([[1.0, 1.0]], [[0, 1]], np.zeros((1, 2), bool),
                                   np.ones((1, 2), bool), [0])
  scores = jnp.float32([[[1, 1], [0, 1], [1, 0], [0, 0]]])
  valid = jnp.ones((1, 4, 2), bool).at[0, :, 1].set(False)
  rewards, _, metrics = UPDATE(scores, valid, rubric, POW3R.init(1, 2))
  np.testing.assert_allclose(metrics["weights"][0], [0.5, 0.5], atol=1e-6)
  assert float(metrics["pressure_zero_signal"]) == 0.0
  assert float(metrics["saturated_frac"]) == 0.0 and float(metrics["dead_frac"]) == 0.0
  np.testing.assert_allclose(rewards[0], [1, 0, 1, 0], atol=1e-6)
  # The same criterion with verdicts that are all equal is zero-signal: half the weight.
  scores_flat = scores.at[0, :, 1].set(1.0)
  _, _, metrics = UPDATE(scores_flat, jnp.ones((1, 4, 2), bool), rubric, POW3R.init(1, 2))
  assert float(metrics["pressure_zero_signal"]) == pytest.approx(0.5)
  assert float(metrics["saturated_frac"]) == pytest.approx(0.5)
  # c0 saturated, c1 absent: the shares count judged criteria only (1 of 1, not 1 of 2).
  _, _, metrics = UPDATE(jnp.ones((1, 4, 2)), valid, rubric, POW3R.init(1, 2))
  assert float(metrics["saturated_frac"]) == 1.0 and float(metrics["dead_frac"]) == 0.0
  assert float(metrics["pressure_zero_signal"]) == pytest.approx(0.5)


def test_all_equal_group_relaxes_factors_toward_one():
  rubric = RubricBatch.from_arrays([[1.0, 2.0, 1.0]], [[0, 0, 1]], np.zeros((1, 3), bool),
                                   np.ones((1, 3), bool), [1])
  scores = jnp.ones((1, 5, 3)).at[..., 1].set(0.0)  # every rollout identical.
  valid = jnp.ones((1, 5, 3), bool)
  state = Pow3rState(alpha=jnp.full((2, 3), 0.67).at[1, 2].set(1.5))
  rewards, state, metrics = UPDATE(scores, valid, rubric, state)
  # Rewards use the old factors: (0.67 / (0.67 + 1.34) + 1) / 2, equal across the group.
  np.testing.assert_allclose(rewards[0], np.full(5, (1 / 3 + 1) / 2), atol=1e-6)
  np.testing.assert_allclose(state.alpha[1], [0.8 * 0.67 + 0.2] * 2 + [0.8 * 1.5 + 0.2],
                             atol=1e-6)
  np.testing.assert_allclose(state.alpha[0], [0.67] * 3)  # not in the batch.
  np.testing.assert_allclose(metrics["pressure_zero_signal"], 1.0, atol=1e-6)


def test_multi_step_saturated_falls_and_contrastive_rises():
  # Same category, equal weights: j0 always passes, j1 splits the group 50/50,
  # j2 (another category) has only 2 of 4 valid verdicts and must keep its factor.
  rubric = RubricBatch.from_arrays([[1.0, 1.0, 1.0]], [[0, 0, 1]], np.zeros((1, 3), bool),
                                   np.ones((1, 3), bool), [0])
  scores = jnp.float32([[[1, 1, 0], [1, 0, 1], [1, 1, 0], [1, 0, 1]]])
  valid = jnp.ones((1, 4, 3), bool).at[0, :2, 2].set(False)
  g0, g1 = math.sqrt(1e-4), math.sqrt(0.25 + 1e-4)
  gbar = (g0 + g1) / 2
  target0 = max(0.5 + 0.5 * g0 / gbar, 0.67)  # = 0.67: the clip binds.
  target1 = min(0.5 + 0.5 * g1 / gbar, 1.5)
  assert target0 == 0.67 and 1.4 < target1 < 1.5
  a0, a1 = 1.0, 1.0
  state = POW3R.init(1, 3)
  for _ in range(5):
    _, state, metrics = UPDATE(scores, valid, rubric, state)
    a0 = 0.8 * a0 + 0.2 * target0
    a1 = 0.8 * a1 + 0.2 * target1
    np.testing.assert_allclose(metrics["factors"][0], [a0, a1, 1.0], rtol=1e-6)
  assert a0 == pytest.approx(0.67 + 0.33 * 0.8**5)


def test_duplicate_prompt_in_batch_last_occurrence_wins():
  rubric = RubricBatch.from_arrays([[1.0, 1.0]] * 2, [[0, 0]] * 2, np.zeros((2, 2), bool),
                                   np.ones((2, 2), bool), [3, 3], allow_duplicate_ids=True)
  scores = jnp.float32([[[1, 1], [1, 0]] * 2, [[0, 1], [0, 1]] * 2])
  _, state, metrics = UPDATE(scores, jnp.ones((2, 4, 2), bool), rubric, POW3R.init(5, 2))
  np.testing.assert_array_equal(state.alpha[3], metrics["factors"][1])


@pytest.mark.parametrize("field,value", [
    ("lam", -0.1), ("lam", 1.1), ("beta", 0.0), ("beta", 1.5), ("alpha_min", 0.0),
    ("alpha_min", 1.2), ("alpha_max", 0.9), ("eps", 0.0), ("min_valid_frac", 0.0),
    ("min_valid_frac", 1.01)])
def test_bad_hyper_parameters_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    make("pow3r", **{field: value})


def test_pitfall_mode_is_checked():
  with pytest.raises(ValueError, match="pitfall_mode"):
    make("pow3r", pitfall_mode="clip")


# ----------------------------------------------------------------------------
# Properties over random batches.
# ----------------------------------------------------------------------------


@SETTINGS
@given(seed=SEEDS, graded=st.booleans())
def test_matches_loop_reference_over_visits(seed, graded):
  rng = np.random.default_rng(seed)
  table = _random_alpha(rng)
  state = Pow3rState(jnp.asarray(table))
  ref_table = table.astype(np.float64)
  for _ in range(2):
    scores, valid, rubric, host = random_batch(rng, B, G, K, P, graded=graded)
    rewards, state, metrics = UPDATE(jnp.asarray(scores), jnp.asarray(valid), rubric, state)
    ref_rewards, ref_table = pow3r_reference(scores, valid, host, ref_table)
    np.testing.assert_allclose(rewards, ref_rewards, atol=2e-5)
    np.testing.assert_allclose(state.alpha, ref_table, atol=2e-5)
    np.testing.assert_allclose(np.abs(metrics["weights"]).sum(-1), 1.0, atol=1e-5)


@SETTINGS
@given(seed=SEEDS)
def test_rows_outside_the_batch_never_change_and_factors_stay_in_range(seed):
  rng = np.random.default_rng(seed)
  table = jnp.asarray(_random_alpha(rng))
  state = Pow3rState(table)
  touched = set()
  for _ in range(3):
    scores, valid, rubric, host = random_batch(rng, B, G, K, P)
    state = UPDATE(jnp.asarray(scores), jnp.asarray(valid), rubric, state)[1]
    touched |= set(host["prompt_ids"].tolist())
    alpha = np.asarray(state.alpha)
    assert alpha.min() >= 0.67 - 1e-7 and alpha.max() <= 1.5 + 1e-7
  untouched = sorted(set(range(P)) - touched)
  np.testing.assert_array_equal(np.asarray(state.alpha)[untouched], np.asarray(table)[untouched])


@SETTINGS
@given(seed=SEEDS, level=st.floats(0.67, 1.5))
def test_equal_factors_reduce_to_category_balanced(seed, level):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, _ = random_batch(rng, B, G, K, P)
  state = Pow3rState(jnp.full((P, K), level, jnp.float32))
  rewards = UPDATE(jnp.asarray(scores), jnp.asarray(valid), rubric, state)[0]
  reference = CAT_BALANCED(jnp.asarray(scores), jnp.asarray(valid), rubric, None)[0]
  np.testing.assert_allclose(rewards, reference, atol=1e-5)


def _pad(scores, valid, host, rng, extra):
  b, g, k = scores.shape
  pad = lambda a, fill: np.concatenate([a, fill], -1)
  scores2 = pad(scores, np.float32(rng.random((b, g, extra))))
  valid2 = pad(valid, rng.random((b, g, extra)) < 0.5)
  rubric2 = RubricBatch.from_arrays(
      pad(host["weights"], rng.choice([-1.0, 2.0], (b, extra))),
      pad(host["categories"], rng.integers(0, 3, (b, extra))),
      pad(host["required"], np.ones((b, extra), bool)),
      pad(host["mask"], np.zeros((b, extra), bool)), host["prompt_ids"])
  return scores2, valid2, rubric2


@SETTINGS
@given(seed=SEEDS)
def test_padding_invariance(seed):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P)
  table = _random_alpha(rng)
  r1, s1, m1 = UPDATE(jnp.asarray(scores), jnp.asarray(valid), rubric, Pow3rState(table))
  scores2, valid2, rubric2 = _pad(scores, valid, host, rng, 3)
  table2 = np.concatenate([table, _random_alpha(rng, k=3)], -1)
  r2, s2, m2 = UPDATE(jnp.asarray(scores2), jnp.asarray(valid2), rubric2, Pow3rState(table2))
  np.testing.assert_allclose(r1, r2, atol=1e-6)
  np.testing.assert_allclose(s1.alpha, s2.alpha[:, :K], atol=1e-6)
  np.testing.assert_array_equal(s2.alpha[:, K:], table2[:, K:])
  np.testing.assert_allclose(m1["weights"], m2["weights"][:, :K], atol=1e-6)
  np.testing.assert_array_equal(m2["weights"][:, K:], 0.0)
  for name in ("saturated_frac", "dead_frac", "pressure_zero_signal", "invalid_verdict_frac"):
    np.testing.assert_allclose(m1[name], m2[name], atol=1e-6)


@SETTINGS
@given(seed=SEEDS)
def test_criterion_permutation_invariance(seed):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P)
  table = _random_alpha(rng)
  perm = rng.permutation(K)
  r1, s1, m1 = UPDATE(jnp.asarray(scores), jnp.asarray(valid), rubric, Pow3rState(table))
  rubric2 = RubricBatch.from_arrays(host["weights"][:, perm], host["categories"][:, perm],
                                    host["required"][:, perm], host["mask"][:, perm],
                                    host["prompt_ids"])
  r2, s2, m2 = UPDATE(jnp.asarray(scores[..., perm]), jnp.asarray(valid[..., perm]), rubric2,
                      Pow3rState(table[:, perm]))
  np.testing.assert_allclose(r1, r2, atol=1e-6)
  np.testing.assert_allclose(np.asarray(s1.alpha)[:, perm], s2.alpha, atol=1e-6)
  np.testing.assert_allclose(np.asarray(m1["weights"])[:, perm], m2["weights"], atol=1e-6)


@settings(max_examples=3, deadline=None)
@given(seed=SEEDS)
def test_jit_equals_eager(seed):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, _ = random_batch(rng, B, G, K, P)
  state = Pow3rState(jnp.asarray(_random_alpha(rng)))
  args = (jnp.asarray(scores), jnp.asarray(valid), rubric, state)
  jitted, eager = UPDATE(*args), POW3R.update(*args)
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_vmap_over_seeds_equals_loop():
  rng = np.random.default_rng(0)
  batches = [random_batch(rng, B, G, K, P) for _ in range(3)]
  states = [Pow3rState(jnp.asarray(_random_alpha(rng))) for _ in range(3)]
  stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])
  vmapped = jax.jit(jax.vmap(POW3R.update))(
      stack(*[b[0] for b in batches]), stack(*[b[1] for b in batches]),
      jax.tree.map(stack, *[b[2] for b in batches]), jax.tree.map(stack, *states))
  for n, (scores, valid, rubric, _) in enumerate(batches):
    single = UPDATE(jnp.asarray(scores), jnp.asarray(valid), rubric, states[n])
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(vmapped)):
      np.testing.assert_allclose(a, b[n], atol=1e-6)


def test_signed_pitfalls_with_equal_factors_reduce_to_signed_category_balanced():
  rng = np.random.default_rng(5)
  scores, valid, rubric, _ = random_batch(rng, B, G, K, P)
  agg = make("pow3r", pitfall_mode="signed")
  state = Pow3rState(jnp.full((P, K), 1.2, jnp.float32))
  rewards, _, metrics = jax.jit(agg.update)(jnp.asarray(scores), jnp.asarray(valid), rubric, state)
  reference = make("category_balanced", pitfall_mode="signed").update(
      jnp.asarray(scores), jnp.asarray(valid), rubric, None)
  np.testing.assert_allclose(rewards, reference[0], atol=1e-5)
  np.testing.assert_allclose(metrics["weights"], reference[2]["weights"], atol=1e-6)
