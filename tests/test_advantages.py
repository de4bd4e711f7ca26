"""Advantage estimators: hand-computed goldens and invariance properties."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import gd2po_reference

from focal import advantages as adv_lib
from focal.rubric import RubricBatch

R3 = math.sqrt(3.0)
NAMES = ("grpo", "dr_grpo", "batch_std", "gdpo", "dvao", "sa_mrpo", "gd2po")
SCALAR = ("grpo", "dr_grpo", "batch_std")


@functools.lru_cache(maxsize=None)
def jitted(name, **hp):
  return jax.jit(adv_lib.make_estimator(name, **hp))


def run(name, rewards, scores, valid, rubric, **hp):
  a, m = jitted(name, **hp)(jnp.asarray(rewards, jnp.float32), jnp.asarray(scores, jnp.float32),
                            jnp.asarray(valid, bool), rubric)
  return np.asarray(a), {k: np.asarray(v) for k, v in m.items()}


def criterion_fixture():
  """Two prompts, G = 4, K = 4 slots.

  Prompt 0: c0 w=2, c1 w=-1 (pitfall), c2 w=1, slot 3 padding (junk verdicts).
    c0 = [1, 1, 0, 0], c1 = [0, 1, 0, 0] (flipped: [1, 0, 1, 1]), c2 = [1, 0, 0, 0].
  Prompt 1: one criterion w=3 (its own category), all verdicts 1: zero variance.
  """
  rubric = RubricBatch.from_lists(
      [[{"weight": 2, "category": 0}, {"weight": -1, "category": 1}, {"weight": 1, "category": 0}],
       [{"weight": 3, "category": 2}]], max_criteria=4)
  scores = np.ones((2, 4, 4), np.float32)
  scores[0, :, 0] = [1, 1, 0, 0]
  scores[0, :, 1] = [0, 1, 0, 0]
  scores[0, :, 2] = [1, 0, 0, 0]
  valid = np.ones((2, 4, 4), bool)
  return np.zeros((2, 4), np.float32), scores, valid, rubric


# Per-criterion group advantages of prompt 0 (ddof = 0): c0 mean 1/2, std 1/2;
# flipped c1 mean 3/4, std sqrt(3)/4; c2 mean 1/4, std sqrt(3)/4.
Z0 = np.array([1, 1, -1, -1])
Z1 = np.array([1 / R3, -R3, 1 / R3, 1 / R3])
Z2 = np.array([R3, -1 / R3, -1 / R3, -1 / R3])


def standardized(x):
  return (x - x.mean()) / x.std()


# ----------------------------------------------------------------------------
# Registry.
# ----------------------------------------------------------------------------


def test_registry_lists_every_estimator():
  assert set(NAMES) <= set(adv_lib.registered_estimators())


def test_unknown_name_lists_registered():
  with pytest.raises(ValueError, match="registered: .*grpo"):
    adv_lib.make_estimator("ppo")


@pytest.mark.parametrize("name,hp", [
    ("grpo", {"eps": -1.0}), ("grpo", {"ddof": 2}), ("grpo", {"lr": 1.0}),
    ("dr_grpo", {"eps": 1e-6}), ("batch_std", {"zero_std_tol": -1.0}),
    ("gdpo", {"pitfall_mode": "clip"}), ("dvao", {"eps": float("nan")}),
    ("sa_mrpo", {"gamma": -0.5}), ("sa_mrpo", {"temperature": 1.0}),
    ("gd2po", {"variant": "soft"}), ("gd2po", {"weights": "human"}), ("gd2po", {"tau": 1.5}),
    ("gd2po", {"ratio_eps": 0.0}),
])
def test_bad_hparams_raise(name, hp):
  with pytest.raises(ValueError):
    adv_lib.make_estimator(name, **hp)


# ----------------------------------------------------------------------------
# Scalar estimators: goldens.
# ----------------------------------------------------------------------------


def scalar_fixture():
  """Group 0 has rewards [1, 0, 1, 0]; group 1 is all 0.5 (zero variance)."""
  rubric = RubricBatch.from_lists([[{"weight": 1}], [{"weight": 1}]])
  rewards = np.array([[1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]], np.float32)
  return rewards, np.zeros((2, 4, 1), np.float32), np.ones((2, 4, 1), bool), rubric


@pytest.mark.parametrize("name,hp,group0", [
    ("grpo", {}, 0.5 / 0.5),
    ("grpo", {"ddof": 1}, 0.5 / math.sqrt(1 / 3)),
    ("dr_grpo", {}, 0.5),
    # Batch std of [1, 0, 1, 0, .5, .5, .5, .5]: sqrt(1/8).
    ("batch_std", {}, 0.5 / math.sqrt(1 / 8)),
])
def test_scalar_golden(name, hp, group0):
  a, m = run(name, *scalar_fixture(), **hp)
  np.testing.assert_allclose(a[0], group0 * np.array([1, -1, 1, -1]), rtol=1e-5)
  np.testing.assert_array_equal(a[1], 0.0)
  assert m["zero_variance_groups"] == pytest.approx(0.5)
  assert m["zero_variance_group_count"] == 1
  assert m["advantage_std"] == pytest.approx(np.std(a), rel=1e-5)


def test_scalar_rollout_without_verdict_is_left_out():
  rewards, scores, valid, rubric = scalar_fixture()
  rewards[0] = [1, 0, 0, 7]
  valid[0, 3] = False
  a, m = run("grpo", rewards, scores, valid, rubric)
  # Stats over [1, 0, 0]: mean 1/3, std sqrt(2)/3.
  np.testing.assert_allclose(a[0], [math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2), 0],
                             rtol=1e-5)
  assert m["rollouts_without_valid"] == 1


def test_scalar_single_rollout_group_is_zero_variance():
  rewards, scores, valid, rubric = scalar_fixture()
  valid[0, 1:] = False
  a, m = run("grpo", rewards, scores, valid, rubric)
  np.testing.assert_array_equal(a, 0.0)
  assert m["zero_variance_group_count"] == 2


# ----------------------------------------------------------------------------
# Criterion-level estimators: goldens.
# ----------------------------------------------------------------------------


def test_gdpo_golden():
  a, m = run("gdpo", *criterion_fixture())
  # |w| normalised: [1/2, 1/4, 1/4]; raw = [1/2 + 1/sqrt3, 1/2 - 1/sqrt3, -1/2, -1/2].
  raw = 0.5 * Z0 + 0.25 * Z1 + 0.25 * Z2
  np.testing.assert_allclose(raw, [0.5 + 1 / R3, 0.5 - 1 / R3, -0.5, -0.5], rtol=1e-12)
  np.testing.assert_allclose(a[0], standardized(raw), rtol=1e-4)
  np.testing.assert_array_equal(a[1], 0.0)  # zero-variance group stays at 0
  assert m["zero_variance_groups"] == pytest.approx(0.5)
  assert m["zero_variance_group_count"] == 1
  # Weights act on pitfall-handled verdicts: |w| under flip, signed under signed.
  np.testing.assert_allclose(m["weights"][0], [0.5, 0.25, 0.25, 0], rtol=1e-6)
  _, m_signed = run("gdpo", *criterion_fixture(), pitfall_mode="signed")
  np.testing.assert_allclose(m_signed["weights"][0], [0.5, -0.25, 0.25, 0], rtol=1e-6)
  assert m["live_criteria_frac"] == pytest.approx(3 / 4)


def test_gdpo_signed_equals_flip():
  a_flip, _ = run("gdpo", *criterion_fixture())
  a_signed, _ = run("gdpo", *criterion_fixture(), pitfall_mode="signed")
  np.testing.assert_allclose(a_flip, a_signed, atol=1e-5)


def test_dvao_golden():
  a, m = run("dvao", *criterion_fixture())
  # S = sum b_k sigma_k = 1/2 * 1/2 + 2 * 1/4 * sqrt3/4; A_i = sum_k b_k (r_ik - mu_k) / S.
  s = 0.25 + R3 / 8
  np.testing.assert_allclose(a[0], np.array([0.5, 0.0, -0.25, -0.25]) / s, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(a[1], 0.0)
  assert m["zero_variance_group_count"] == 1
  np.testing.assert_allclose(m["weights"][0, :3], np.array([0.25, R3 / 16, R3 / 16]) / s,
                             rtol=1e-5)


def test_dvao_signed_equals_flip():
  # Under `signed` the pitfall's b = -1/4 meets r = s (not 1 - s): v_1 z_1 is unchanged, and the
  # normaliser takes |b| so it stays 1/4 + sqrt3/8. Without the |b| it would drop to 1/4.
  a_flip, m_flip = run("dvao", *criterion_fixture())
  a_signed, m_signed = run("dvao", *criterion_fixture(), pitfall_mode="signed")
  np.testing.assert_allclose(a_signed, a_flip, atol=1e-5)
  s = 0.25 + R3 / 8
  np.testing.assert_allclose(m_signed["weights"][0, :3], np.array([0.25, -R3 / 16, R3 / 16]) / s,
                             rtol=1e-5)


def test_dvao_single_valid_rollout_gives_zero():
  rewards, scores, valid, rubric = criterion_fixture()
  valid[0, 1:] = False
  a, m = run("dvao", rewards, scores, valid, rubric)
  np.testing.assert_array_equal(a, 0.0)
  assert m["zero_variance_group_count"] == 2
  assert m["rollouts_without_valid"] == 3


def test_sa_mrpo_golden():
  a, m = run("sa_mrpo", *criterion_fixture(), gamma=1.0)
  # Flipped means [1/2, 3/4, 1/4]: min 1/4, max 3/4, s = [1/2, 1, 0];
  # b (1 - s) = [1/4, 0, 1/4] -> [1/2, 0, 1/2].
  np.testing.assert_allclose(m["saturation"], [[0.5, 1, 0, 0], [0, 0, 0, 0]], atol=1e-6)
  np.testing.assert_allclose(m["weights"][0], [0.5, 0, 0.5, 0], atol=1e-6)
  np.testing.assert_allclose(a[0], standardized(0.5 * Z0 + 0.5 * Z2), rtol=1e-4)
  np.testing.assert_array_equal(a[1], 0.0)
  # gamma = 2: b (1 - s)^2 = [1/8, 0, 1/4] -> [1/3, 0, 2/3].
  a2, m2 = run("sa_mrpo", *criterion_fixture(), gamma=2.0)
  np.testing.assert_allclose(m2["weights"][0], [1 / 3, 0, 2 / 3, 0], atol=1e-6)
  np.testing.assert_allclose(a2[0], standardized(Z0 / 3 + 2 * Z2 / 3), rtol=1e-4)


def test_sa_mrpo_coefficients_sum_to_one_per_prompt_before_batch_standardisation():
  # Prompt 0 as in the golden: b (1 - s) = [1/4, 0, 1/4] -> [1/2, 0, 1/2].
  # Prompt 1: c0 w=1 at [1, 0, 0, 0] (mean 1/4), c1 w=3 at [1, 1, 1, 0] (mean 3/4): s = [0, 1],
  # b (1 - s) = [1/4, 0] -> [1, 0]. The two prompts' raw mass differs (1/2 vs 1/4) before the
  # outer normalisation, so skipping it rescales one prompt against the other in the batch.
  _, scores, valid, _ = criterion_fixture()
  rubric = RubricBatch.from_lists(
      [[{"weight": 2, "category": 0}, {"weight": -1, "category": 1}, {"weight": 1, "category": 0}],
       [{"weight": 1}, {"weight": 3}]], max_criteria=4)
  scores[1, :, 0] = [1, 0, 0, 0]
  scores[1, :, 1] = [1, 1, 1, 0]
  a, m = run("sa_mrpo", np.zeros((2, 4)), scores, valid, rubric)
  np.testing.assert_allclose(m["weights"][:, :3], [[0.5, 0, 0.5], [1, 0, 0]], atol=1e-6)
  raw = np.concatenate([0.5 * Z0 + 0.5 * Z2, Z2])  # prompt 1's c0 has prompt 0's c2 pattern
  np.testing.assert_allclose(a.ravel(), standardized(raw), rtol=1e-4, atol=1e-5)


def test_sa_mrpo_gamma_zero_is_gdpo():
  a0, _ = run("sa_mrpo", *criterion_fixture(), gamma=0.0)
  a1, _ = run("gdpo", *criterion_fixture())
  np.testing.assert_allclose(a0, a1, atol=1e-6)


def test_sa_mrpo_equal_means_fall_back_to_gdpo():
  rewards, scores, valid, rubric = criterion_fixture()
  scores[0, :, 2] = [1, 1, 0, 0]  # c0 and c2 both at 1/2 ...
  scores[0, :, 1] = [1, 1, 0, 0]  # ... and flipped c1 too: max == min
  a, m = run("sa_mrpo", rewards, scores, valid, rubric)
  np.testing.assert_array_equal(m["saturation"], 0.0)
  a_gdpo, _ = run("gdpo", rewards, scores, valid, rubric)
  np.testing.assert_allclose(a, a_gdpo, atol=1e-6)


def test_gdpo_invalid_verdict_left_out():
  rewards, scores, valid, rubric = criterion_fixture()
  valid[0, 0, 2] = False  # c2 then sees [0, 0, 0]: no contrast
  a, m = run("gdpo", rewards, scores, valid, rubric)
  raw = 0.5 * Z0 + 0.25 * Z1
  np.testing.assert_allclose(a[0], standardized(raw), rtol=1e-4)
  assert m["live_criteria_frac"] == pytest.approx(2 / 4)


def test_criterion_rollout_without_verdict_gets_zero():
  rewards, scores, valid, rubric = criterion_fixture()
  valid[0, 3] = False
  for name in ("gdpo", "dvao", "sa_mrpo", "gd2po"):
    a, m = run(name, rewards, scores, valid, rubric)
    assert a[0, 3] == 0.0 and np.any(a[0, :3] != 0)
    assert m["rollouts_without_valid"] == 1


# ----------------------------------------------------------------------------
# Properties.
# ----------------------------------------------------------------------------

B, G, K, PAD = 3, 4, 5, 2


def random_problem(seed, graded=False):
  rng = np.random.default_rng(seed)
  n_real = rng.integers(1, K + 1, B)
  mask = np.arange(K)[None] < n_real[:, None]
  weights = rng.choice([-2.0, -1.0, 1.0, 2.0, 3.0, 5.0], (B, K)) * mask
  categories = rng.integers(0, 3, (B, K)) * mask
  required = rng.random((B, K)) < 0.4
  levels = np.array([0, 0.25, 0.5, 0.75, 1.0]) if graded else np.array([0.0, 1.0])
  scores = rng.choice(levels, (B, G, K)).astype(np.float32)
  valid = rng.random((B, G, K)) < 0.85
  rewards = rng.choice(levels, (B, G)).astype(np.float32)
  rubric = RubricBatch.from_arrays(weights, categories, required, mask, np.arange(B))
  return rewards, scores, valid, rubric


def pad_problem(rewards, scores, valid, rubric, seed):
  """Adds PAD junk criterion slots (mask False, arbitrary verdicts)."""
  rng = np.random.default_rng(seed + 1)
  cat = lambda a, b: np.concatenate([np.asarray(a), b], -1)
  big = RubricBatch.from_arrays(cat(rubric.weights, rng.normal(size=(B, PAD))),
                                cat(rubric.categories, rng.integers(0, 3, (B, PAD))),
                                cat(rubric.required, np.ones((B, PAD), bool)),
                                cat(rubric.mask, np.zeros((B, PAD), bool)), np.arange(B))
  return (rewards, cat(scores, rng.random((B, G, PAD)).astype(np.float32)),
          cat(valid, rng.random((B, G, PAD)) < 0.5), big)


def permute_problem(rewards, scores, valid, rubric, perm):
  f = lambda x: np.asarray(x)[..., perm]
  return (rewards, f(scores), f(valid),
          RubricBatch.from_arrays(f(rubric.weights), f(rubric.categories), f(rubric.required),
                                  f(rubric.mask), np.arange(B)))


SETTINGS = settings(max_examples=25, deadline=None)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), graded=st.booleans())
def test_padding_invariance(seed, graded):
  problem = random_problem(seed, graded)
  padded = pad_problem(*problem, seed)
  for name in NAMES:
    a, _ = run(name, *problem)
    b, _ = run(name, *padded)
    np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), graded=st.booleans(), data=st.data())
def test_criterion_permutation_invariance(seed, graded, data):
  problem = random_problem(seed, graded)
  perm = np.array(data.draw(st.permutations(range(K))))
  for name in NAMES:
    a, _ = run(name, *problem)
    b, _ = run(name, *permute_problem(*problem, perm))
    np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_group_advantages_sum_to_zero(seed):
  problem = random_problem(seed, graded=True)
  for name in ("grpo", "dr_grpo"):
    a, _ = run(name, *problem)
    np.testing.assert_allclose(a.sum(-1), 0.0, atol=1e-5, err_msg=name)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 10.0), shift=st.floats(-5.0, 5.0))
def test_grpo_positive_affine_invariance(seed, scale, shift):
  rewards, scores, valid, rubric = random_problem(seed, graded=True)
  a, _ = run("grpo", rewards, scores, valid, rubric)
  b, _ = run("grpo", scale * rewards + shift, scores, valid, rubric)
  np.testing.assert_allclose(a, b, atol=2e-3)


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_jit_equals_eager(seed):
  rewards, scores, valid, rubric = random_problem(seed, graded=True)
  args = (jnp.asarray(rewards), jnp.asarray(scores), jnp.asarray(valid), rubric)
  for name in NAMES:
    a_jit, m_jit = jitted(name)(*args)
    a_eager, m_eager = adv_lib.make_estimator(name)(*args)
    np.testing.assert_allclose(a_jit, a_eager, atol=1e-5, err_msg=name)
    for k in m_jit:
      np.testing.assert_allclose(m_jit[k], m_eager[k], atol=1e-5, err_msg=f"{name}:{k}")


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_outputs_finite_and_zero_without_verdict(seed):
  problem = random_problem(seed, graded=True)
  _, _, valid, rubric = problem
  no_verdict = ~np.any(valid & np.asarray(rubric.mask)[:, None, :], -1)
  for name in NAMES:
    a, m = run(name, *problem)
    assert np.all(np.isfinite(a)), name
    assert all(np.all(np.isfinite(v)) for v in m.values()), name
    np.testing.assert_array_equal(a[no_verdict], 0.0, err_msg=name)
    assert m["rollouts_without_valid"] == no_verdict.sum()


# ----------------------------------------------------------------------------
# GD²PO: by hand, and against the transcription of the public code.
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def gd2po_all_variants(weights):
  """jit(tau, rewards, scores, valid, rubric) -> {(variant, whiten): (advantages, metrics)}:
  tau is traced, so one compilation per weighting and shape serves every variant and tau."""
  def run_all(tau, *args):
    return {(v, w): adv_lib.make_estimator("gd2po", variant=v, weights=weights, tau=tau,
                                           whiten=w)(*args)
            for v in ("hard", "snr") for w in (True, False)}
  return jax.jit(run_all)


def gd2po_fixture():
  """Two prompts, G = 3, two criteria of weight 1.

  Prompt 0: c0 = [1, 1, 0], c1 = [0, 1, 1]: A0 = [u, u, -2u], A1 = [-2u, u, u] with
  u = 1/sqrt(3) (ddof 1): rollouts 0 and 2 disagree in sign, rollout 1 does not.
  Prompt 1: c0 = c1 = [1, 0, 0]: A = [2u, -u, -u] for both, no conflict.
  """
  rubric = RubricBatch.from_lists([[{"weight": 1}, {"weight": 1}]] * 2)
  scores = np.zeros((2, 3, 2), np.float32)
  scores[0, :, 0], scores[0, :, 1] = [1, 1, 0], [0, 1, 1]
  scores[1, :, 0] = scores[1, :, 1] = [1, 0, 0]
  return np.zeros((2, 3), np.float32), scores, np.ones((2, 3, 2), bool), rubric


def whitened(x, keep):
  k = x[keep]
  return np.where(keep, (x - k.mean()) / math.sqrt(k.var(ddof=1) + 1e-8), 0.0)


def test_gd2po_golden_hard_and_snr():
  u = 1 / R3
  _, scores, valid, rubric = gd2po_fixture()
  run_at = lambda tau: gd2po_all_variants("equal")(jnp.float32(tau), jnp.zeros((2, 3)),
                                                    jnp.asarray(scores), jnp.asarray(valid),
                                                    rubric)
  # hard: prompt 0 keeps rollout 1 only, so its consensus weight is 1/3.
  x = np.array([[0.0, 2 * u / 3, 0.0], [4 * u, -2 * u, -2 * u]])
  keep = np.array([[False, True, False], [True, True, True]])
  a, m = run_at(0.2)[("hard", True)]
  np.testing.assert_allclose(a, whitened(x, keep), atol=1e-5)
  assert m["conflict_frac"] == pytest.approx(2 / 6) and m["dropped_frac"] == pytest.approx(2 / 6)
  assert m["group_keep_ratio"] == pytest.approx((1 / 3 + 1) / 2)
  np.testing.assert_allclose(run_at(0.2)[("hard", False)][0], x, atol=1e-5)   # x itself
  # snr: rollouts 0 and 2 of prompt 0 have |ratio| = |u - 2u| / 3u = 1/3.
  x_keep_all = np.array([[-u, 2 * u, -u], [4 * u, -2 * u, -2 * u]])
  a, m = run_at(0.2)[("snr", True)]
  np.testing.assert_allclose(a, whitened(x_keep_all, np.ones((2, 3), bool)), atol=1e-5)
  assert m["dropped_frac"] == 0.0 and m["conflict_frac"] == pytest.approx(2 / 6)
  np.testing.assert_allclose(run_at(0.4)[("snr", True)][0], whitened(x, keep), atol=1e-5)
  # Rubric weights (1/2 each) halve every criterion's contribution.
  a, _ = run("gd2po", *gd2po_fixture(), whiten=False)
  np.testing.assert_allclose(a, x / 2, atol=1e-5)


def _public_flat(scores, rubric, hp, perm):
  """The transcription's advantages [B, G] for focal inputs (all criteria real, all valid),
  fed as verl's flat batch in the row order `perm`; raises what it raises."""
  w = np.asarray(rubric.weights)
  s = np.where(w[:, None, :] < 0, 1.0 - scores, scores).astype(np.float64)   # flipped
  b, g, k = s.shape
  rows = [(p, i) for p in range(b) for i in range(g)]
  rows = [rows[j] for j in perm]
  index = np.array([f"uid-{p}" for p, _ in rows], dtype=object)
  rewards = [np.array([[s[p, i, c]] for p, i in rows]) for c in range(k)]
  weights = None
  if hp["weights"] == "rubric":
    shares = np.abs(w) / np.abs(w).sum(-1, keepdims=True)
    weights = np.array([shares[p] for p, _ in rows])
  out, ratio = gd2po_reference.gd2po_advantages(
      rewards, np.ones((b * g, 1)), index, hp["variant"], ratio_threshold=hp["tau"],
      use_masked_whiten=hp["whiten"], weights=weights)
  adv = np.zeros((b, g))
  for (p, i), value in zip(rows, out[:, 0]):
    adv[p, i] = value
  return adv, ratio


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), g=st.sampled_from([2, 5]), graded=st.booleans(),
       variant=st.sampled_from(["hard", "snr"]), weights=st.sampled_from(["equal", "rubric"]),
       tau=st.floats(0.05, 0.95), whiten=st.booleans())
def test_gd2po_equals_a_transcription_of_the_public_code(seed, g, graded, variant, weights, tau,
                                                         whiten):
  rng = np.random.default_rng(seed)
  b, k = 5, 3
  levels = np.array([0, 0.25, 0.5, 0.75, 1.0]) if graded else np.array([0.0, 1.0])
  scores = rng.choice(levels, (b, g, k)).astype(np.float32)
  rubric = RubricBatch.from_arrays(rng.choice([-2.0, -1.0, 1.0, 2.0, 5.0], (b, k)),
                                   np.zeros((b, k), int), np.zeros((b, k), bool),
                                   np.ones((b, k), bool), np.arange(b))
  hp = dict(variant=variant, weights=weights, tau=tau, whiten=whiten)
  ours, metrics = gd2po_all_variants(weights)(
      jnp.float32(tau), jnp.zeros((b, g)), jnp.asarray(scores), jnp.ones((b, g, k), bool),
      rubric)[(variant, whiten)]
  ours, metrics = np.asarray(ours), {key: np.asarray(v) for key, v in metrics.items()}
  try:
    public, ratio = _public_flat(scores, rubric, hp, rng.permutation(b * g))
  except ValueError as e:   # masked_var: a single kept rollout in the batch
    assert "sum of the mask is one" in str(e)
    np.testing.assert_array_equal(ours, 0.0)
    return
  if ratio is not None:   # a ratio within rounding of tau may fall either side in float32
    assume(np.all(np.abs(np.abs(ratio) - tau) > 1e-5))
  np.testing.assert_allclose(ours, public, rtol=1e-4, atol=1e-4)
  assert np.all(np.isfinite(ours)) and 0.0 <= metrics["dropped_frac"] <= metrics["conflict_frac"]


def test_gd2po_vmap_equals_loop():
  """Independent batches stacked on a leading axis (jit == eager: test_jit_equals_eager)."""
  problems = [random_problem(seed, graded=True) for seed in (1, 2, 3)]
  stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])
  batched = jax.jit(jax.vmap(adv_lib.make_estimator("gd2po")))(
      *[stack(*parts) for parts in zip(*[p[:3] for p in problems])],
      jax.tree.map(stack, *[p[3] for p in problems]))
  for n, problem in enumerate(problems):
    single = run("gd2po", *problem)
    for a, c in zip(jax.tree.leaves(single), jax.tree.leaves(batched)):
      np.testing.assert_allclose(a, c[n], atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_gd2po_criterion_without_any_valid_verdict_is_as_if_absent(seed):
  rewards, scores, valid, rubric = random_problem(seed, graded=True)
  valid = valid.copy()
  valid[:, :, 0] = False
  cut = lambda x: np.asarray(x)[..., 1:]
  assume(cut(rubric.mask).any(-1).all())
  absent = RubricBatch.from_arrays(cut(rubric.weights), cut(rubric.categories),
                                   cut(rubric.required), cut(rubric.mask), np.arange(B))
  a, _ = run("gd2po", rewards, scores, valid, rubric, weights="equal")
  b, _ = run("gd2po", rewards, cut(scores), cut(valid), absent, weights="equal")
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_gd2po_an_invalid_verdict_adds_nothing_to_its_rollout():
  # Criterion 0 is live (verdicts 1, 0, 0.5 judged); rollout 3's verdict is invalid and carries
  # a stray score of 1: its advantage must be 0, not (1 - 0.5) / sigma.
  from focal.advantages.gd2po import gd2po_parts
  rubric = RubricBatch.from_lists([[{"weight": 1}, {"weight": 1}]])
  scores = jnp.float32([[[1, 1], [0, 0], [0.5, 1], [1, 0]]])
  valid = jnp.array([[[True, True], [True, True], [True, True], [False, True]]])
  parts = gd2po_parts(scores, valid, rubric, variant="hard", tau=0.8, weights="rubric",
                      eps=1e-6, sign_eps=1e-8, ratio_eps=1e-8, pitfall_mode="flip",
                      zero_std_tol=1e-6)
  assert bool(parts["live"][0, 0])
  assert float(parts["c"][0, 3, 0]) == 0.0 and float(parts["c"][0, 0, 0]) > 0.0


def test_gd2po_zero_variance_groups_are_counted_per_prompt():
  # Prompt 0: one criterion, normalised weight exactly 1, verdicts that differ (signal);
  # prompt 1: the same verdict everywhere (no signal). Half the groups have none.
  rubric = RubricBatch.from_lists([[{"weight": 3}], [{"weight": 3}]])
  scores = jnp.float32([[[1], [0], [1], [0]], [[1], [1], [1], [1]]])
  rewards = scores[..., 0]
  _, metrics = adv_lib.make_estimator("gd2po")(rewards, scores, jnp.ones((2, 4, 1), bool), rubric)
  assert float(metrics["zero_variance_groups"]) == 0.5
