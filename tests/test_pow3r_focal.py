"""POW3R x Focal: golden values, loop reference, reductions to its parents, invariances."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adaptive_reference import focal_saturation_reference, pow3r_reference, random_batch
from focal.aggregators import EmptyState, make
from focal.aggregators.focal_reward import FocalState
from focal.aggregators.pow3r import Pow3rState
from focal.aggregators.pow3r_focal import Pow3rFocalState
from focal.rubric import RubricBatch

B, G, K, P = 4, 6, 7, 10
SETTINGS = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)

HP = dict(temperature=0.7, gamma=2.0, focal_eps=0.1)
AGG = make("pow3r_focal", **HP)
UPDATE = jax.jit(AGG.update)
AGG_EMA = make("pow3r_focal", **HP, ema=0.5)
UPDATE_EMA = jax.jit(AGG_EMA.update)
GAMMA0 = jax.jit(make("pow3r_focal", gamma=0.0).update)
POW3R = jax.jit(make("pow3r").update)


def _args(scores, valid, rubric, state):
  return jnp.asarray(scores), jnp.asarray(valid), rubric, state


def _random_state(rng, ema: bool, k=K):
  alpha = jnp.float32(rng.uniform(0.67, 1.5, (P, k)))
  focal = (FocalState(sat=jnp.float32(rng.random((P, k))), seen=jnp.asarray(rng.random(P) < 0.5))
           if ema else AGG.init(P, k).focal)
  return Pow3rFocalState(alpha=alpha, focal=focal)


def test_golden_first_visit():
  # w = [1, 1, 2], categories [0, 0, 1] (j2 alone); gamma = 1, focal_eps = 0.5.
  rubric = RubricBatch.from_arrays([[1.0, 1.0, 2.0]], [[0, 0, 1]], np.zeros((1, 3), bool),
                                   np.ones((1, 3), bool), [0])
  scores = jnp.float32([[[1, 0, 1], [1, 1, 0]]])
  agg = make("pow3r_focal", gamma=1.0, focal_eps=0.5)
  rewards, state, metrics = jax.jit(agg.update)(scores, jnp.ones((1, 2, 3), bool), rubric,
                                                agg.init(1, 3))
  d0, d1 = 0.25 + 0.5, 0.25 + 0.25          # b = [.25, .25, .5]
  p0 = math.exp(d0) / (math.exp(d0) + math.exp(d1))
  p1 = 1 - p0
  sat = [1.0, p1, p0]
  c = [1.5 - x for x in sat]                # (1 - sat + .5)^1; alpha = 1 on the first visit.
  np.testing.assert_allclose(metrics["saturation"][0], sat, atol=1e-6)
  cat0 = [c[0] / (c[0] + c[1]), 1.0]        # rollout 0 passes j0 only; rollout 1 passes both.
  cat1 = [1.0, 0.0]
  np.testing.assert_allclose(rewards[0], [(a + b) / 2 for a, b in zip(cat0, cat1)], atol=1e-6)
  coef = [c[0] / (c[0] + c[1]) / 2, c[1] / (c[0] + c[1]) / 2, 0.5]
  np.testing.assert_allclose(metrics["weights"][0], coef, atol=1e-6)
  # Factors follow POW3R alone: j2 is the only criterion of its category and splits the
  # group, so rho = 1 and ahat = 1; in category 0, j0 (saturated) falls and j1 rises.
  g0, g1 = math.sqrt(1e-4), math.sqrt(0.25 + 1e-4)
  gbar = (g0 + g1) / 2
  ahat = [max(0.5 + 0.5 * g0 / gbar, 0.67), min(0.5 + 0.5 * g1 / gbar, 1.5), 1.0]
  np.testing.assert_allclose(state.alpha[0], [0.8 + 0.2 * a for a in ahat], atol=1e-6)


@pytest.mark.parametrize("hp,field", [
    (dict(focal_eps=-1.0), "focal_eps"), (dict(eps=0.0), "eps"), (dict(lam=2.0), "lam"),
    (dict(temperature=-1.0), "temperature"), (dict(ema=1.0), "ema"), (dict(gamma=-1.0), "gamma"),
    (dict(alpha_max=0.5), "alpha_max"), (dict(pitfall_mode="?"), "pitfall_mode")])
def test_bad_hyper_parameters_name_the_field(hp, field):
  with pytest.raises(ValueError, match=field):
    make("pow3r_focal", **hp)


@SETTINGS
@given(seed=SEEDS, graded=st.booleans())
def test_matches_loop_reference_over_visits(seed, graded):
  rng = np.random.default_rng(seed)
  state = _random_state(rng, ema=False)
  table = np.asarray(state.alpha, np.float64)
  for _ in range(2):
    scores, valid, rubric, host = random_batch(rng, B, G, K, P, graded=graded)
    rewards, state, metrics = UPDATE(*_args(scores, valid, rubric, state))
    sat = focal_saturation_reference(scores, valid, host, HP["temperature"])
    tilt = (1 - sat + HP["focal_eps"]) ** HP["gamma"]
    ref_rewards, table = pow3r_reference(scores, valid, host, table, tilt=tilt)
    np.testing.assert_allclose(metrics["saturation"], sat, atol=1e-5)
    np.testing.assert_allclose(rewards, ref_rewards, atol=2e-5)
    np.testing.assert_allclose(state.alpha, table, atol=2e-5)
    assert float(np.min(rewards)) >= -1e-6 and float(np.max(rewards)) <= 1 + 1e-6


@SETTINGS
@given(seed=SEEDS)
def test_gamma_zero_is_pow3r(seed):
  rng = np.random.default_rng(seed)
  state = _random_state(rng, ema=False)
  scores, valid, rubric, _ = random_batch(rng, B, G, K, P)
  r1, s1, m1 = GAMMA0(*_args(scores, valid, rubric, state))
  r2, s2, m2 = POW3R(*_args(scores, valid, rubric, Pow3rState(state.alpha)))
  np.testing.assert_allclose(r1, r2, atol=1e-6)
  np.testing.assert_array_equal(s1.alpha, s2.alpha)
  for key in ("weights", "factors", "saturated_frac", "dead_frac", "pressure_zero_signal"):
    np.testing.assert_allclose(m1[key], m2[key], atol=1e-6)


@SETTINGS
@given(seed=SEEDS)
def test_padding_and_permutation_invariance_with_ema_state(seed):
  rng = np.random.default_rng(seed)
  scores, valid, rubric, host = random_batch(rng, B, G, K, P)
  state = _random_state(rng, ema=True)
  r1, s1, m1 = UPDATE_EMA(*_args(scores, valid, rubric, state))

  extra = 2
  pad = lambda a, fill: np.concatenate([a, fill], -1)
  rubric2 = RubricBatch.from_arrays(
      pad(host["weights"], np.ones((B, extra))), pad(host["categories"], np.ones((B, extra), int)),
      pad(host["required"], np.zeros((B, extra), bool)), pad(host["mask"], np.zeros((B, extra), bool)),
      host["prompt_ids"])
  state2 = jax.tree.map(lambda a: jnp.concatenate([a, jnp.ones((P, extra), a.dtype)], -1)
                        if a.ndim == 2 else a, state)
  r2, s2, m2 = UPDATE_EMA(  # compiled once for the padded shape, not once per example
      jnp.asarray(pad(scores, np.float32(rng.random((B, G, extra))))),
      jnp.asarray(pad(valid, np.ones((B, G, extra), bool))), rubric2, state2)
  np.testing.assert_allclose(r1, r2, atol=1e-6)
  for key in ("weights", "factors", "saturation"):
    np.testing.assert_allclose(m1[key], m2[key][:, :K], atol=1e-6)
  np.testing.assert_allclose(s1.alpha, s2.alpha[:, :K], atol=1e-6)

  perm = rng.permutation(K)
  rubric3 = RubricBatch.from_arrays(host["weights"][:, perm], host["categories"][:, perm],
                                    host["required"][:, perm], host["mask"][:, perm],
                                    host["prompt_ids"])
  state3 = jax.tree.map(lambda a: a[:, perm] if a.ndim == 2 else a, state)
  r3, s3, _ = UPDATE_EMA(*_args(scores[..., perm], valid[..., perm], rubric3, state3))
  np.testing.assert_allclose(r1, r3, atol=1e-6)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s3)):
    np.testing.assert_allclose(np.asarray(a)[:, perm] if a.ndim == 2 else a, b, atol=1e-6)


@SETTINGS
@given(seed=SEEDS)
def test_rows_outside_the_batch_never_change_and_factors_stay_in_range(seed):
  rng = np.random.default_rng(seed)
  state0 = state = _random_state(rng, ema=True)
  touched = set()
  for _ in range(3):
    scores, valid, rubric, host = random_batch(rng, B, G, K, P)
    state = UPDATE_EMA(*_args(scores, valid, rubric, state))[1]
    touched |= set(host["prompt_ids"].tolist())
    assert float(state.alpha.min()) >= 0.67 - 1e-7 and float(state.alpha.max()) <= 1.5 + 1e-7
  others = sorted(set(range(P)) - touched)
  for a, b in zip(jax.tree.leaves(state0), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a)[others], np.asarray(b)[others])


def test_jit_equals_eager_and_vmap_equals_loop():
  rng = np.random.default_rng(11)
  batches = [random_batch(rng, B, G, K, P) for _ in range(3)]
  states = [_random_state(rng, ema=True) for _ in range(3)]
  scores, valid, rubric, _ = batches[0]
  jitted = UPDATE_EMA(*_args(scores, valid, rubric, states[0]))
  eager = AGG_EMA.update(*_args(scores, valid, rubric, states[0]))
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    np.testing.assert_allclose(a, b, atol=1e-6)

  stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])
  vmapped = jax.jit(jax.vmap(AGG_EMA.update))(
      stack(*[b[0] for b in batches]), stack(*[b[1] for b in batches]),
      jax.tree.map(stack, *[b[2] for b in batches]), jax.tree.map(stack, *states))
  for n, (scores, valid, rubric, _) in enumerate(batches):
    single = UPDATE_EMA(*_args(scores, valid, rubric, states[n]))
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(vmapped)):
      np.testing.assert_allclose(a, b[n], atol=1e-6)


def test_signed_gamma_zero_is_signed_pow3r_and_state_tables_follow_ema():
  rng = np.random.default_rng(11)
  scores, valid, rubric, _ = random_batch(rng, B, G, K, P)
  state = _random_state(rng, ema=False)
  ours = make("pow3r_focal", gamma=0.0, pitfall_mode="signed")
  theirs = make("pow3r", pitfall_mode="signed")
  r1, _, m1 = jax.jit(ours.update)(*_args(scores, valid, rubric, state))
  r2, _, m2 = jax.jit(theirs.update)(*_args(scores, valid, rubric, Pow3rState(state.alpha)))
  np.testing.assert_allclose(r1, r2, atol=1e-6)
  np.testing.assert_allclose(m1["weights"], m2["weights"], atol=1e-6)
  assert np.any(np.asarray(m1["weights"]) < 0)  # the batch has pitfalls, kept signed
  # Focal's saturation table exists only when it is smoothed across visits.
  assert isinstance(make("pow3r_focal").init(P, K).focal, EmptyState)
  assert isinstance(make("pow3r_focal", ema=0.5).init(P, K).focal, FocalState)
