"""Focal Reward (METHODS §4, reconstruction): golden values, reference, projection KKT, invariances."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from adaptive_reference import flip, focal_reference, project_reference, random_batch
from focal.advantages import make_estimator
from focal.aggregators import make
from focal.aggregators.focal_reward import (FocalState, focal_hparams, project_capped_simplex,
                                            saturation, stateful)
from focal.rubric import RubricBatch

B, G, K, P = 4, 6, 7, 10
SETTINGS = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)

# The bare formula (METHODS §4: no floor; the factory's default trains with w_min = 0.05) is
# what the hand-computed values and the loop reference's defaults describe.
BARE = dict(w_min=0.0)
CONFIGS = {
    "bare": BARE,
    "capped_ema": dict(temperature=0.5, gamma=2.0, eps=0.1, w_min=0.08, w_max=0.5, ema=0.6),
    "headroom": dict(saturation="ema_headroom", headroom_decay=0.7, gamma=2.0, w_min=0.05),
    "advantage": dict(placement="advantage", w_min=0.05),
    "headroom_advantage": dict(saturation="ema_headroom", placement="advantage", gamma=1.0,
                               eps=0.0, **BARE),
}
REWARD_PLACED = [name for name, hp in CONFIGS.items() if hp.get("placement") != "advantage"]
AGGS = {name: make("focal", **hp) for name, hp in CONFIGS.items()}
UPDATES = {name: jax.jit(agg.update) for name, agg in AGGS.items()}
WEIGHTED_SUM = jax.jit(make("weighted_sum").update)
GAMMA0 = jax.jit(make("focal", **BARE, gamma=0.0).update)
CAP_ONLY = jax.jit(make("focal", **BARE, w_max=0.3).update)
GAMMA0_ADVANTAGE = jax.jit(make("focal", **BARE, gamma=0.0, placement="advantage").update)
SIGNED_ADVANTAGE = jax.jit(make("focal", placement="advantage", w_min=0.05,
                                pitfall_mode="signed").update)


GDPO = jax.jit(make_estimator("gdpo"))

# Caps traced, not static: one compilation serves every (w_min, w_max).
PROJECT = jax.jit(project_capped_simplex)


def _args(scores, valid, rubric, state):
  return jnp.asarray(scores), jnp.asarray(valid), rubric, state


# ----------------------------------------------------------------------------
# Golden values, by hand.
# ----------------------------------------------------------------------------


def test_golden_rewards_with_pitfall_padding_and_invalid_verdicts():
  # w = [1, -1 (pitfall), 2, padding]: b = [.25, .25, .5]. gamma = 1, eps = 0.
  rubric = RubricBatch.from_arrays([[1.0, -1.0, 2.0, 0.0]], [[0, 1, 1, 0]],
                                   np.zeros((1, 4), bool), [[True, True, True, False]], [0])
  scores = jnp.float32([[[1, 0, 0, 1],     # flipped: [1, 1, 0]
                         [1, 1, 1, 0],     # flipped: [1, 0, 1]
                         [0, 0, 0, 0]]])   # no valid verdict at all
  valid = jnp.ones((1, 3, 4), bool).at[0, 2].set(False)
  agg = make("focal", **BARE, gamma=1.0, eps=0.0)
  rewards, _, metrics = jax.jit(agg.update)(scores, valid, rubric, agg.init(1, 4))
  d0, d1 = 0.25 + 0.25, 0.25 + 0.5
  p0 = math.exp(d0) / (math.exp(d0) + math.exp(d1))
  p1 = 1.0 - p0
  sat = [1.0, p0, p1, 0.0]
  raw = [0.25 * 0.0, 0.25 * (1 - p0), 0.5 * (1 - p1)]
  f = [x / sum(raw) for x in raw] + [0.0]
  np.testing.assert_allclose(metrics["saturation"][0], sat, atol=1e-6)
  np.testing.assert_allclose(metrics["weights"][0], f, atol=1e-6)
  r0, r1 = f[1], f[2]
  np.testing.assert_allclose(rewards[0], [r0, r1, (r0 + r1) / 2], atol=1e-6)
  assert float(metrics["rollouts_without_valid"]) == 1.0


def test_golden_invalid_verdict_renormalises_present_mass():
  # Two criteria, equal weights; rollout 1 lacks a verdict on criterion 1.
  rubric = RubricBatch.from_arrays([[1.0, 1.0]], [[0, 0]], np.zeros((1, 2), bool),
                                   np.ones((1, 2), bool), [0])
  scores = jnp.float32([[[1, 0], [0, 1]]])
  valid = jnp.bool_([[[True, True], [True, False]]])
  agg = make("focal", **BARE, gamma=2.0, eps=0.5)
  rewards, _, metrics = jax.jit(agg.update)(scores, valid, rubric, agg.init(1, 2))
  # d0 = 0.5 (both judged); d1 = 0 (only criterion 0, failed).
  p0 = math.exp(0.5) / (math.exp(0.5) + 1.0)
  m = [p0 * 1 + (1 - p0) * 0, 0.0]  # criterion 1: only rollout 0 judged it, p renormalised to 1.
  raw = [0.5 * (1 - m[0] + 0.5) ** 2, 0.5 * (1 - m[1] + 0.5) ** 2]
  f = [x / sum(raw) for x in raw]
  np.testing.assert_allclose(metrics["saturation"][0], m, atol=1e-6)
  np.testing.assert_allclose(rewards[0], [f[0], 0.0], atol=1e-6)  # rollout 1: f0 * 0 / f0.


def test_golden_single_criterion_and_all_equal_group():
  rubric = RubricBatch.from_arrays([[3.0, 0.0], [2.0, 1.0]], [[0, 0], [0, 1]],
                                   np.zeros((2, 2), bool), [[True, False], [True, True]], [0, 1])
  scores = jnp.float32([[[1, 0], [0, 0], [1, 0]],
                        [[1, 0], [1, 0], [1, 0]]])  # prompt 1: every rollout identical.
  agg = make("focal", **BARE)
  rewards, _, metrics = jax.jit(agg.update)(scores, jnp.ones((2, 3, 2), bool), rubric,
                                            agg.init(2, 2))
  # One criterion: f = 1 whatever its saturation, so R = s.
  np.testing.assert_allclose(rewards[0], [1.0, 0.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(metrics["weights"][0], [1.0, 0.0], atol=1e-6)
  # Identical rollouts: sat = their verdicts; f ∝ b (1 - sat + .05)^3.
  raw = [2 / 3 * 0.05**3, 1 / 3 * 1.05**3]
  f0 = raw[0] / sum(raw)
  np.testing.assert_allclose(metrics["saturation"][1], [1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(rewards[1], [f0] * 3, atol=1e-6)


def test_golden_projection():
  x = jnp.float32([[0.7, 0.2, 0.1, 0.0]])
  mask = jnp.bool_([[True, True, True, False]])
  # tau = -0.05: f = clip([.75, .25, .15], .15, .6).
  np.testing.assert_allclose(PROJECT(x, mask, 0.15, 0.6)[0],
                             [0.6, 0.25, 0.15, 0.0], atol=1e-6)
  # K_real * w_min = 1.2 > 1: the floor drops to 1/K_real, hence uniform.
  np.testing.assert_allclose(PROJECT(x, mask, 0.4, 0.6)[0],
                             [1 / 3, 1 / 3, 1 / 3, 0.0], atol=1e-6)
  # K_real * w_max < 1: the cap rises to 1/K_real.
  np.testing.assert_allclose(PROJECT(x, mask, 0.0, 0.2)[0],
                             [1 / 3, 1 / 3, 1 / 3, 0.0], atol=1e-6)


def test_cap_holds_without_a_floor():
  # w_min = 0, w_max = 0.4: the cap alone must still run the projection. Criterion 0 passes in
  # every rollout (sat 1, so gamma = 1, eps = 0 give it raw weight 0); criteria 1 and 2 are
  # identical, so f_raw = [0, .5, .5]. Projected onto {sum 1, f <= .4}: tau = -.2 gives
  # [.2, .4, .4].
  rubric = RubricBatch.from_arrays([[1.0, 1.0, 1.0]], [[0, 0, 0]], np.zeros((1, 3), bool),
                                   np.ones((1, 3), bool), [0])
  scores = jnp.float32([[[1, 1, 1], [1, 0, 0]]])
  agg = make("focal", **BARE, gamma=1.0, eps=0.0, w_max=0.4)
  rewards, _, metrics = jax.jit(agg.update)(scores, jnp.ones((1, 2, 3), bool), rubric, None)
  np.testing.assert_allclose(metrics["weights"][0], [0.2, 0.4, 0.4], atol=1e-6)
  np.testing.assert_allclose(rewards[0], [1.0, 0.2], atol=1e-6)


def test_floor_holds_without_a_cap():
  # The cap test's batch with w_min = 0.25, w_max = 1: tau = .125 gives [.25, .375, .375].
  rubric = RubricBatch.from_arrays([[1.0, 1.0, 1.0]], [[0, 0, 0]], np.zeros((1, 3), bool),
                                   np.ones((1, 3), bool), [0])
  scores = jnp.float32([[[1, 1, 1], [1, 0, 0]]])
  agg = make("focal", gamma=1.0, eps=0.0, w_min=0.25)
  rewards, _, metrics = jax.jit(agg.update)(scores, jnp.ones((1, 2, 3), bool), rubric, None)
  np.testing.assert_allclose(metrics["weights"][0], [0.25, 0.375, 0.375], atol=1e-6)
  np.testing.assert_allclose(rewards[0], [1.0, 0.25], atol=1e-6)


def test_every_criterion_saturated_with_eps_zero_falls_back_to_the_static_shares():
  # sat = 1 everywhere and eps = 0: every b (1 - sat)^gamma is 0, so f = b = [.25, .75].
  rubric = RubricBatch.from_arrays([[1.0, 3.0]], [[0, 1]], np.zeros((1, 2), bool),
                                   np.ones((1, 2), bool), [0])
  agg = make("focal", **BARE, gamma=1.0, eps=0.0)
  rewards, _, metrics = jax.jit(agg.update)(jnp.ones((1, 3, 2)), jnp.ones((1, 3, 2), bool),
                                            rubric, None)
  np.testing.assert_allclose(metrics["weights"][0], [0.25, 0.75], atol=1e-6)
  np.testing.assert_allclose(rewards[0], [1.0, 1.0, 1.0], atol=1e-6)


def test_ema_first_visit_of_a_criterion_without_verdicts_is_unsaturated():
  # Criterion 1 has no valid verdict on the prompt's first visit: its saturation (used and
  # stored) is 0, not a blend with the empty table.
  rubric = RubricBatch.from_arrays([[1.0, 1.0]], [[0, 0]], np.zeros((1, 2), bool),
                                   np.ones((1, 2), bool), [2])
  agg = make("focal", **BARE, ema=0.5)
  valid = jnp.ones((1, 2, 2), bool).at[0, :, 1].set(False)
  _, state, metrics = jax.jit(agg.update)(jnp.ones((1, 2, 2)), valid, rubric, agg.init(3, 2))
  np.testing.assert_allclose(metrics["saturation"][0], [1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(state.sat, [[0, 0], [0, 0], [1, 0]], atol=1e-6)
  np.testing.assert_array_equal(state.seen, [False, False, True])


@SETTINGS
@given(seed=SEEDS)
def test_cap_without_a_floor_matches_the_reference(seed):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P)
  rewards, _, metrics = CAP_ONLY(*_args(scores, valid, rubric, None))
  ref_rewards, ref_f, _ = focal_reference(scores, valid, host, w_max=0.3)
  np.testing.assert_allclose(metrics["weights"], ref_f, atol=2e-5)
  np.testing.assert_allclose(rewards, ref_rewards, atol=2e-5)
  n = np.asarray(rubric.mask).sum(-1, keepdims=True)
  assert np.all(np.asarray(metrics["weights"]) <= np.maximum(0.3, 1 / n) + 1e-6)


def test_ema_blends_saturation_across_visits():
  rng = np.random.default_rng(3)
  agg, update = AGGS["capped_ema"], UPDATES["capped_ema"]
  stateless = jax.jit(make("focal", **{**CONFIGS["capped_ema"], "ema": 0.0}).update)
  scores1, valid1, rubric, _ = random_batch(rng, B, G, K, P)
  scores2, valid2, _, _ = random_batch(rng, B, G, K, P)
  state = agg.init(P, K)
  _, state, m1 = update(*_args(scores1, valid1, rubric, state))
  raw1 = stateless(*_args(scores1, valid1, rubric, None))[2]["saturation"]
  np.testing.assert_allclose(m1["saturation"], raw1, atol=1e-6)  # first visit: raw.
  pids = np.asarray(rubric.prompt_ids)
  assert np.asarray(state.seen)[pids].all() and np.asarray(state.seen).sum() == B
  _, state, m2 = update(*_args(scores2, valid2, rubric, state))
  raw2 = stateless(*_args(scores2, valid2, rubric, None))[2]["saturation"]
  evidence = (np.asarray(valid2) & np.asarray(rubric.mask)[:, None]).any(1)
  expected = np.where(evidence, 0.6 * np.asarray(m1["saturation"]) + 0.4 * np.asarray(raw2),
                      np.asarray(m1["saturation"]))
  np.testing.assert_allclose(m2["saturation"], expected, atol=1e-6)
  np.testing.assert_allclose(np.asarray(state.sat)[pids], expected, atol=1e-6)


@pytest.mark.parametrize("hp,field", [
    (dict(temperature=0.0), "temperature"), (dict(gamma=-1.0), "gamma"), (dict(eps=-0.1), "eps"),
    (dict(w_min=-0.1), "w_min"), (dict(w_min=0.5, w_max=0.4), "w_max"), (dict(w_max=1.5), "w_max"),
    (dict(ema=1.0), "ema"), (dict(ema=-0.5), "ema"), (dict(pitfall_mode="x"), "pitfall_mode"),
    (dict(saturation="x"), "saturation"), (dict(placement="loss"), "placement"),
    (dict(headroom_decay=1.0), "headroom_decay"), (dict(headroom_decay=-0.1), "headroom_decay"),
    (dict(saturation="ema_headroom", ema=0.5), "ema=0.5")])
def test_bad_hyper_parameters_name_the_field(hp, field):
  with pytest.raises(ValueError, match=field):
    make("focal", **hp)


# ----------------------------------------------------------------------------
# Properties over random batches.
# ----------------------------------------------------------------------------



@SETTINGS
@given(seed=SEEDS, w_min=st.sampled_from([0.0, 0.05, 0.1, 0.2]),
       w_max=st.sampled_from([0.15, 0.3, 0.6, 1.0]), simplex=st.booleans())
def test_projection_is_feasible_optimal_and_matches_bisection(seed, w_min, w_max, simplex):
  w_max = max(w_max, w_min)
  rng = np.random.default_rng(seed)
  mask = rng.random((8, 9)) < 0.7
  mask[:, 0] = True
  x = rng.dirichlet(np.ones(9), size=8) if simplex else rng.normal(0, 0.5, (8, 9))
  x = np.float32(np.where(mask, x, rng.random((8, 9))))  # junk on padding must not matter.
  f = np.asarray(PROJECT(jnp.asarray(x), jnp.asarray(mask), w_min, w_max))
  for row in range(8):
    real = mask[row]
    n = real.sum()
    lo, hi = min(w_min, 1 / n), max(w_max, 1 / n)
    fr = f[row, real]
    assert f[row, ~real].tolist() == [0.0] * int((~real).sum())
    np.testing.assert_allclose(fr.sum(), 1.0, atol=1e-5)
    assert fr.min() >= lo - 1e-6 and fr.max() <= hi + 1e-6
    np.testing.assert_allclose(fr, project_reference(x[row, real].astype(np.float64), w_min,
                                                     w_max), atol=2e-5)
    # KKT: x - f is one constant tau on free coordinates; x - lo <= tau where f sits on
    # the floor and x - hi >= tau where it sits on the cap.
    shift = x[row, real] - fr
    free = (fr > lo + 1e-5) & (fr < hi - 1e-5)
    if free.any():
      tau = shift[free].mean()
      np.testing.assert_allclose(shift[free], tau, atol=2e-5)
      assert np.all(x[row, real][fr <= lo + 1e-6] - lo <= tau + 2e-5)
      assert np.all(x[row, real][fr >= hi - 1e-6] - hi >= tau - 2e-5)


@SETTINGS
@given(seed=SEEDS, graded=st.booleans())
def test_matches_loop_reference(seed, graded):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P, graded=graded)
  rewards, _, metrics = UPDATES["bare"](*_args(scores, valid, rubric, None))
  ref_rewards, ref_f, ref_sat = focal_reference(scores, valid, host)
  np.testing.assert_allclose(metrics["saturation"], ref_sat, atol=1e-5)
  np.testing.assert_allclose(metrics["weights"], ref_f, atol=1e-5)
  np.testing.assert_allclose(rewards, ref_rewards, atol=1e-5)

  hp = CONFIGS["capped_ema"]
  rewards, _, metrics = UPDATES["capped_ema"](*_args(scores, valid, rubric,
                                                     AGGS["capped_ema"].init(P, K)))
  ref_rewards, ref_f, _ = focal_reference(scores, valid, host, hp["temperature"], hp["gamma"],
                                          hp["eps"], hp["w_min"], hp["w_max"])
  np.testing.assert_allclose(metrics["weights"], ref_f, atol=2e-5)
  np.testing.assert_allclose(rewards, ref_rewards, atol=2e-5)
  real = np.asarray(rubric.mask)
  w = np.asarray(metrics["weights"])
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
  n = real.sum(-1, keepdims=True)
  assert np.all(w[real] >= np.broadcast_to(np.minimum(0.08, 1 / n), w.shape)[real] - 1e-6)
  assert np.all(w[real] <= np.broadcast_to(np.maximum(0.5, 1 / n), w.shape)[real] + 1e-6)


@SETTINGS
@given(seed=SEEDS)
def test_gamma_zero_is_the_static_weighted_mean_and_rewards_in_unit_interval(seed):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, _ = random_batch(rng, B, G, K, P)
  args = _args(scores, valid, rubric, None)
  np.testing.assert_allclose(GAMMA0(*args)[0], WEIGHTED_SUM(*args)[0], atol=1e-6)
  for name in REWARD_PLACED:
    update = UPDATES[name]
    rewards = np.asarray(update(*_args(scores, valid, rubric, AGGS[name].init(P, K)))[0])
    assert rewards.min() >= -1e-6 and rewards.max() <= 1 + 1e-6


def test_high_temperature_gives_the_plain_mean():
  rng = np.random.default_rng(1)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P)
  agg = make("focal", **BARE, temperature=1e6)
  sat = jax.jit(agg.update)(*_args(scores, valid, rubric, None))[2]["saturation"]
  _, s = (np.abs(host["weights"]), np.where(host["weights"][:, None] < 0, 1 - scores, scores))
  pres = valid & host["mask"][:, None]
  mean = np.where(pres.any(1), (s * pres).sum(1) / np.maximum(pres.sum(1), 1), 0.0)
  np.testing.assert_allclose(sat, mean, atol=1e-5)


def _pad(scores, valid, host, rng, extra):
  b, g, _ = scores.shape
  pad = lambda a, fill: np.concatenate([a, fill], -1)
  return (pad(scores, np.float32(rng.random((b, g, extra)))),
          pad(valid, rng.random((b, g, extra)) < 0.5),
          RubricBatch.from_arrays(pad(host["weights"], rng.choice([-1.0, 2.0], (b, extra))),
                                  pad(host["categories"], rng.integers(0, 3, (b, extra))),
                                  pad(host["required"], np.ones((b, extra), bool)),
                                  pad(host["mask"], np.zeros((b, extra), bool)),
                                  host["prompt_ids"]))


def _state_with_history(rng, name, k):
  """A FocalState as after some visits (random sat, half the prompts seen)."""
  if not stateful(focal_hparams(**CONFIGS[name])):
    return AGGS[name].init(P, k)
  return FocalState(sat=jnp.float32(rng.random((P, k))), seen=jnp.asarray(rng.random(P) < 0.5))


@SETTINGS
@given(seed=SEEDS, name=st.sampled_from(sorted(CONFIGS)))
def test_padding_and_permutation_invariance(seed, name):
  rng = np.random.default_rng(seed)
  update = UPDATES[name]
  scores, valid, rubric, host = random_batch(rng, B, G, K, P)
  state = _state_with_history(rng, name, K)
  r1, s1, m1 = update(*_args(scores, valid, rubric, state))

  scores2, valid2, rubric2 = _pad(scores, valid, host, rng, 3)
  state2 = jax.tree.map(lambda a: jnp.concatenate([a, jnp.zeros((P, 3), a.dtype)], -1)
                        if a.ndim == 2 else a, state)
  r2, s2, m2 = update(*_args(scores2, valid2, rubric2, state2))  # compiled once per shape
  np.testing.assert_allclose(r1, r2, atol=1e-6)
  for key in ("weights", "saturation"):
    np.testing.assert_allclose(m1[key], m2[key][:, :K], atol=1e-6)
    np.testing.assert_array_equal(m2[key][:, K:], 0.0)

  perm = rng.permutation(K)
  rubric3 = RubricBatch.from_arrays(host["weights"][:, perm], host["categories"][:, perm],
                                    host["required"][:, perm], host["mask"][:, perm],
                                    host["prompt_ids"])
  state3 = jax.tree.map(lambda a: a[:, perm] if a.ndim == 2 else a, state)
  r3, s3, m3 = update(*_args(scores[..., perm], valid[..., perm], rubric3, state3))
  np.testing.assert_allclose(r1, r3, atol=1e-6)
  np.testing.assert_allclose(np.asarray(m1["weights"])[:, perm], m3["weights"], atol=1e-6)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s3)):
    np.testing.assert_allclose(np.asarray(a)[:, perm] if a.ndim == 2 else a, b, atol=1e-6)


@SETTINGS
@given(seed=SEEDS)
def test_state_rows_outside_the_batch_never_change(seed):
  rng = np.random.default_rng(seed)
  state = _state_with_history(rng, "capped_ema", K)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P)
  new = UPDATES["capped_ema"](*_args(scores, valid, rubric, state))[1]
  others = sorted(set(range(P)) - set(host["prompt_ids"].tolist()))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
    np.testing.assert_array_equal(np.asarray(a)[others], np.asarray(b)[others])


@pytest.mark.parametrize("name", ["capped_ema", "headroom_advantage"])
def test_jit_equals_eager_and_vmap_equals_loop(name):
  rng = np.random.default_rng(7)
  agg, update = AGGS[name], UPDATES[name]
  batches = [random_batch(rng, B, G, K, P) for _ in range(3)]
  states = [_state_with_history(rng, name, K) for _ in range(3)]
  scores, valid, rubric, _ = batches[0]
  jitted = update(*_args(scores, valid, rubric, states[0]))
  eager = agg.update(*_args(scores, valid, rubric, states[0]))
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    np.testing.assert_allclose(a, b, atol=1e-6)

  stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])
  vmapped = jax.jit(jax.vmap(agg.update))(
      stack(*[b[0] for b in batches]), stack(*[b[1] for b in batches]),
      jax.tree.map(stack, *[b[2] for b in batches]), jax.tree.map(stack, *states))
  for n, (scores, valid, rubric, _) in enumerate(batches):
    single = update(*_args(scores, valid, rubric, states[n]))
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(vmapped)):
      np.testing.assert_allclose(a, b[n], atol=1e-6)


def test_signed_mode_subtracts_hit_pitfalls_with_the_same_coefficients():
  # w = [2, -2] and a padding slot: b = [.5, .5, 0]. Flipped verdicts decide sat and f in both
  # modes; the padding slot keeps coefficient 0.
  rubric = RubricBatch.from_arrays([[2.0, -2.0, 0.0]], [[0, 0, 0]], np.zeros((1, 3), bool),
                                   [[True, True, False]], [0])
  scores = jnp.float32([[[1, 1, 1], [1, 0, 1], [0, 1, 1]]])
  valid = jnp.ones((1, 3, 3), bool)
  flip = jax.jit(make("focal", **BARE).update)(scores, valid, rubric, None)
  signed = jax.jit(make("focal", **BARE, pitfall_mode="signed").update)(scores, valid, rubric, None)
  np.testing.assert_allclose(flip[2]["saturation"], signed[2]["saturation"])
  f = np.asarray(flip[2]["weights"][0])
  np.testing.assert_allclose(signed[2]["weights"][0], [f[0], -f[1], 0.0], atol=1e-6)
  np.testing.assert_allclose(flip[0][0], [f[0], 1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(signed[0][0], [f[0] - f[1], f[0], -f[1]], atol=1e-6)


# ----------------------------------------------------------------------------
# The variants (focal_variants): ema_headroom saturation, advantage placement.
# ----------------------------------------------------------------------------


def headroom_reference(scores, valid, host, table, decay):
  """M [B, K] after one visit and the updated table, by loops (M = 0 before any visit)."""
  w = host["weights"]
  table = np.array(table, np.float64)
  out = np.zeros(w.shape)
  for b, pid in enumerate(host["prompt_ids"]):
    for j in range(w.shape[1]):
      if not host["mask"][b, j]:
        continue
      vals = [1 - scores[b, i, j] if w[b, j] < 0 else scores[b, i, j]
              for i in range(scores.shape[1]) if valid[b, i, j]]
      old = table[pid, j]
      out[b, j] = decay * old + (1 - decay) * sum(vals) / len(vals) if vals else old
    table[pid] = out[b]
  return out, table


def branch_sum_reference(scores, valid, host, f):
  """R [B, G] = sum_k f_k (s_ik - mu_k) / (sigma_k + 1e-6) by loops (flipped pitfalls)."""
  w = host["weights"]
  bsz, g, k = scores.shape
  r = np.zeros((bsz, g))
  for b in range(bsz):
    for j in range(k):
      judged = [i for i in range(g) if valid[b, i, j]]
      if not host["mask"][b, j] or not judged:
        continue
      s = {i: 1 - float(scores[b, i, j]) if w[b, j] < 0 else float(scores[b, i, j])
           for i in judged}
      mu = sum(s.values()) / len(s)
      sigma = math.sqrt(sum((x - mu) ** 2 for x in s.values()) / len(s))
      if sigma > 1e-6:
        for i in judged:
          r[b, i] += f[b, j] * (s[i] - mu) / (sigma + 1e-6)
  return r


@SETTINGS
@given(seed=SEEDS, graded=st.booleans())
def test_ema_headroom_matches_loop_reference_over_visits(seed, graded):
  rng = np.random.default_rng(seed)
  hp = CONFIGS["headroom"]
  state = AGGS["headroom"].init(P, K)
  table = np.zeros((P, K))
  for _ in range(3):   # the same prompts visited again: M accumulates
    scores, valid, rubric, host = random_batch(rng, B, G, K, P, graded=graded)
    rewards, state, metrics = UPDATES["headroom"](*_args(scores, valid, rubric, state))
    m, table = headroom_reference(scores, valid, host, table, hp["headroom_decay"])
    np.testing.assert_allclose(metrics["saturation"], m, atol=1e-5)
    np.testing.assert_allclose(np.asarray(state.sat), table, atol=1e-5)
    ref_rewards, ref_f, _ = focal_reference(scores, valid, host, gamma=hp["gamma"],
                                            w_min=hp["w_min"], sat=m)
    np.testing.assert_allclose(metrics["weights"], ref_f, atol=2e-5)
    np.testing.assert_allclose(rewards, ref_rewards, atol=2e-5)


def test_ema_headroom_golden_first_and_second_visit():
  # One criterion pair, equal weights, gamma = 1, eps = 0: f = H / sum H (the unofficial form).
  rubric = RubricBatch.from_arrays([[1.0, 1.0]], [[0, 0]], np.zeros((1, 2), bool),
                                   np.ones((1, 2), bool), [0])
  scores = jnp.float32([[[1, 0], [1, 1]]])            # means 1.0 and 0.5
  agg = make("focal", **BARE, saturation="ema_headroom", gamma=1.0, eps=0.0)
  update = jax.jit(agg.update)
  _, state, m1 = update(scores, jnp.ones((1, 2, 2), bool), rubric, agg.init(1, 2))
  np.testing.assert_allclose(m1["saturation"][0], [0.1, 0.05], atol=1e-6)
  np.testing.assert_allclose(m1["weights"][0], [0.9 / 1.85, 0.95 / 1.85], atol=1e-6)
  _, _, m2 = update(scores, jnp.ones((1, 2, 2), bool), rubric, state)
  np.testing.assert_allclose(m2["saturation"][0], [0.19, 0.095], atol=1e-6)


@SETTINGS
@given(seed=SEEDS, graded=st.booleans())
def test_advantage_placement_matches_loop_reference_and_signed_equals_flip(seed, graded):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P, graded=graded)
  rewards, _, metrics = UPDATES["advantage"](*_args(scores, valid, rubric, None))
  _, ref_f, _ = focal_reference(scores, valid, host, w_min=CONFIGS["advantage"]["w_min"])
  np.testing.assert_allclose(metrics["weights"], ref_f, atol=2e-5)
  expected = branch_sum_reference(scores, valid, host, ref_f)
  has = (valid & host["mask"][:, None]).any(-1)
  np.testing.assert_allclose(np.where(has, rewards, 0.0), expected, atol=1e-4)
  # A rollout without a verdict gets its group's mean, which is 0: the branches are centred.
  np.testing.assert_allclose(np.where(has, 0.0, rewards), 0.0, atol=1e-5)
  signed = SIGNED_ADVANTAGE(*_args(scores, valid, rubric, None))
  np.testing.assert_allclose(signed[0], rewards, atol=1e-5)


def _gdpo_informative(scores, valid, host):
  """[B, G]: a verdict on a real criterion, in a group where some real, weighted criterion's
  verdicts vary (std > 1e-6): GDPO's definition, written from the rubric, not from R."""
  weights, s = flip(scores, host["weights"])
  present = np.asarray(valid) & host["mask"][:, None, :]
  live = np.zeros(s.shape[0], bool)
  for b, k in np.ndindex(*weights.shape):
    verdicts = s[b, present[b, :, k], k]
    live[b] |= bool(weights[b, k] != 0 and verdicts.size and verdicts.std() > 1e-6)
  return present.any(-1) & live[:, None]


# The seeds below once failed an oracle that called a group informative when its R varied: in
# each, one group's criteria vary but their weighted z-scores cancel, so R is 0 for every rollout.
# GDPO keeps such a group in the batch statistics (its criteria carry signal; their sum is a tie),
# which lowers the std by sqrt(18/24) there.
@SETTINGS
@given(seed=SEEDS, all_valid=st.booleans())
@example(seed=18109, all_valid=False)  # one rollout's R sits exactly at the batch mean
@example(seed=149378, all_valid=False)
@example(seed=1213360976, all_valid=False)
@example(seed=1827296250, all_valid=True)
def test_advantage_placement_at_gamma_zero_is_gdpo_before_its_batch_standardisation(seed,
                                                                                    all_valid):
  """gamma = 0 leaves f = b, GDPO's normalised weights: standardising Focal's R over the
  batch's informative rollouts must give `gdpo`'s advantages (an independent implementation)."""
  rng = np.random.default_rng(seed)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P, p_valid=1.0 if all_valid else 0.85)
  args = _args(scores, valid, rubric, None)
  r = np.asarray(GAMMA0_ADVANTAGE(*args)[0], np.float64)
  adv, metrics = GDPO(jnp.zeros((B, G)), *args[:3])
  informative = _gdpo_informative(scores, valid, host)
  mean = r[informative].mean()
  std = r[informative].std()
  np.testing.assert_allclose(np.where(informative, (r - mean) / (std + 1e-6), 0.0), adv,
                             atol=1e-4)
  assert informative.any() or float(metrics["zero_variance_groups"]) == 1.0


def test_advantage_placement_fed_to_dr_grpo_is_the_branch_sum():
  rng = np.random.default_rng(11)
  scores, valid, rubric, _ = random_batch(rng, B, G, K, P, p_valid=1.0)
  args = _args(scores, valid, rubric, None)
  r, _, _ = UPDATES["advantage"](*args)
  adv, _ = jax.jit(make_estimator("dr_grpo"))(r, *args[:3])
  np.testing.assert_allclose(adv, r, atol=1e-5)



def test_saturation_at_a_tiny_temperature_is_the_top_rollouts_verdicts():
  """T -> 0 puts the softmax on the rollout with the highest static score: d = [.5, 1, 0] gives
  rollout 1's verdicts [1, 1]. Each criterion subtracts its max before exp: at T = 1e-3 the
  logits reach 1000, and exp of anything not shifted down overflows (a mutant adding the max
  survived the sample)."""
  s = jnp.asarray([[[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
  present = jnp.ones((1, 3, 2), bool)
  sat, evidence = saturation(s, present, jnp.asarray([[0.5, 0.5]]), 1e-3)
  np.testing.assert_array_equal(np.asarray(sat), [[1.0, 1.0]])
  assert bool(evidence.all())
