"""The simulated world, policy and judge (focal/sim/{knobs,population,world,policy,judge}.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from configs.sim import base
from focal.data import healthbench, rar
from focal.sim import components, judge, policy, population
from focal.sim.knobs import check_knobs, make_knobs
from focal.sim.metrics import expected_metrics
from focal.sim.world import CONTRASTIVE, DEAD, RARE, SATURATED, make_world
from scipy.special import ndtri

BASE = components.knob_values(base.get_config())


@functools.lru_cache(maxsize=None)
def _world_fn(pop: str, p: int, k: int, m: int):
  return jax.jit(lambda key, knobs: make_world(key, knobs, population.make_population(pop), p, k,
                                               m, 4))


def _world(seed=0, pop="synthetic", p=1000, k=16, m=32, **overrides):
  knobs = make_knobs({**BASE, **overrides}, k)
  return jax.device_get(_world_fn(pop, p, k, m)(jax.random.key(seed), knobs)), knobs


@pytest.mark.parametrize("skew", [0.0, 0.5])
def test_class_shares_follow_the_knobs_whatever_the_skew(skew):
  # HealthBench's axes are unequal (4% to 39%): skew ties classes to axes, not the shares.
  w, _ = _world(pop="healthbench", saturated=0.3, rare=0.2, dead=0.1, category_skew=skew)
  classes = np.asarray(w.classes)[np.asarray(w.rubric.mask)]
  shares = [np.mean(classes == c) for c in (SATURATED, RARE, DEAD, CONTRASTIVE)]
  np.testing.assert_allclose(shares, [0.3, 0.2, 0.1, 0.4], atol=0.015)
  if skew:   # the largest axis, completeness (id 1), sits at quantiles 0.33-0.72: no saturated
    completeness = np.asarray(w.rubric.categories)[np.asarray(w.rubric.mask)] == 1
    assert np.mean(classes[completeness] == SATURATED) < 0.3 * (1 - skew) + 0.02


def test_full_skew_lets_the_category_decide_the_class():
  # "equal": categories k mod 4, so with shares of 1/4 each category is one class.
  w, _ = _world(pop="equal", saturated=0.25, rare=0.25, dead=0.25, category_skew=1.0)
  expected = np.array([SATURATED, RARE, DEAD, CONTRASTIVE])[np.arange(16) % 4]
  np.testing.assert_array_equal(np.asarray(w.classes), np.broadcast_to(expected, (1000, 16)))


@pytest.mark.parametrize("rare_sharing", [0.0, 1.0])
def test_initial_pass_rates_of_each_class(rare_sharing):
  w, knobs = _world(saturated=0.3, rare=0.2, dead=0.1, rare_rate=0.04, conflict=0.0,
                    saturated_level=0.9, rare_sharing=rare_sharing)
  m = jax.device_get(expected_metrics(w.init_logits, w, 4, 16))
  # Only the specialist passes a rare criterion, and it starts with exactly rare_rate.
  np.testing.assert_allclose(m["class_pass_rate"][RARE], 0.04, rtol=1e-4)
  assert m["class_pass_rate"][DEAD] == 0.0
  # Without conflict every type passes a saturated criterion with saturated_level.
  np.testing.assert_allclose(m["class_pass_rate"][SATURATED], 0.9, rtol=1e-4)
  satisfy, classes = np.asarray(w.satisfy), np.asarray(w.classes)
  real = np.asarray(w.rubric.mask)
  for p in range(20):
    dead = real[p] & (classes[p] == DEAD)
    assert np.all(satisfy[p][:, dead] == 0.0)
    categories = np.asarray(w.rubric.categories)[p]
    for k in np.flatnonzero(real[p] & (classes[p] == RARE)):
      # Its specialist: type k (the slot's own), or its category's type on every prompt.
      specialist = categories[k] if rare_sharing else k
      assert np.array_equal(np.flatnonzero(satisfy[p, :, k]), [specialist])


def test_full_cooccurrence_makes_contrastive_criteria_pass_on_the_same_types():
  w, _ = _world(saturated=0.0, rare=0.0, dead=0.0, cooccurrence=1.0, conflict=0.0)
  satisfy = np.asarray(w.satisfy)
  for p in range(50):
    real = np.asarray(w.rubric.mask[p])
    cols = satisfy[p][:, real]
    assert np.all(cols == cols[:, :1])


def test_full_conflict_makes_paired_criteria_exclusive():
  w, _ = _world(saturated=0.0, rare=0.0, dead=0.0, cooccurrence=0.0, conflict=1.0)
  satisfy, mask = np.asarray(w.satisfy), np.asarray(w.rubric.mask)
  for k in range(1, 16, 2):
    both = mask[:, k]
    np.testing.assert_array_equal(satisfy[both, :, k], 1.0 - satisfy[both, :, k - 1])


def test_heavy_easy_puts_the_top_weight_on_saturated_criteria():
  w, _ = _world(pop="healthbench", saturated=0.5, heavy_easy=1.0)
  weights, classes = np.asarray(w.rubric.weights), np.asarray(w.classes)
  saturated = np.asarray(w.rubric.mask) & (classes == SATURATED)
  np.testing.assert_array_equal(np.abs(weights[saturated]), 10.0)


def test_a_world_drawn_with_given_skills_follows_them():
  """Held-out prompts are a world drawn with the training world's shared map A: with
  type_sharing = 1 (no co-occurrence, no conflict) a generic type passes a contrastive
  criterion exactly when features . A[:, type, category] < Phi^-1(contrast_rate), so the
  held-out patterns follow the training A; the rest of the draw does not depend on A."""
  pop = population.make_population("synthetic")
  draw = jax.jit(lambda key, knobs, skills: make_world(key, knobs, pop, 1000, 16, 32, 4, skills))
  overrides = {"type_sharing": 1.0, "cooccurrence": 0.0, "conflict": 0.0}
  train, knobs = _world(seed=1, **overrides)   # the compiled draw the other tests use
  own, _ = _world(seed=2, **overrides)
  held = jax.device_get(draw(jax.random.key(2), knobs, train.skills))
  np.testing.assert_array_equal(held.skills, train.skills)
  for field in ("classes", "init_logits", "features"):
    np.testing.assert_array_equal(getattr(held, field), getattr(own, field))
  np.testing.assert_array_equal(held.rubric.weights, own.rubric.weights)
  skill = np.einsum("pf,fmc->pmc", held.features, train.skills)
  cats = np.asarray(held.rubric.categories)
  expected = np.take_along_axis(skill, cats[:, None, :], 2) < ndtri(float(knobs.contrast_rate))
  generic = np.ones((1000, 32), bool)
  generic[:, :16] = np.asarray(held.classes) != RARE   # type k is slot k's specialist if rare
  check = (np.asarray(held.classes) == CONTRASTIVE)[:, None, :] & generic[:, :, None] \
      & np.asarray(held.rubric.mask)[:, None, :]
  assert check.sum() > 10000
  np.testing.assert_array_equal(np.asarray(held.satisfy)[check], expected[check].astype(float))
  assert not np.array_equal(np.asarray(own.satisfy)[check], np.asarray(held.satisfy)[check])


def test_healthbench_population_shape():
  w, _ = _world(pop="healthbench", p=4000, k=40, m=48, rare_rate=0.01)
  mask, weights = np.asarray(w.rubric.mask), np.asarray(w.rubric.weights)
  counts = mask.sum(1)
  assert abs(counts.mean() - 9.7) < 0.15 and counts.min() >= 2   # 48,562 / 5,000
  real = weights[mask]
  assert np.all(real == np.round(real)) and np.all((np.abs(real) >= 1) & (np.abs(real) <= 10))
  assert np.all(weights[:, 0] > 0)
  assert abs(np.mean(real < 0) - 0.25 * (1 - 1 / counts.mean())) < 0.02
  assert population.HEALTHBENCH_AXES == tuple(healthbench.AXES)


def test_rar_population_shape():
  w, _ = _world(pop="rar", p=2000, k=24, m=32, rare_rate=0.01, heavy_easy=0.0)
  mask, weights = np.asarray(w.rubric.mask), np.asarray(w.rubric.weights)
  categories, required = np.asarray(w.rubric.categories), np.asarray(w.rubric.required)
  counts = mask.sum(1)
  assert counts.min() == 7 and counts.max() == 20
  allowed = {0: {5.0}, 1: {3.0, 4.0}, 2: {1.0, 2.0}, 3: {-1.0, -2.0}}
  for c, values in allowed.items():
    assert set(np.unique(weights[mask & (categories == c)])) == values
  np.testing.assert_array_equal(required, mask & (categories == 0))
  assert np.all(categories[:, 0] == 0)
  assert population.RAR_LABELS == tuple(rar.CATEGORY_NAMES[i] for i in range(4))


def test_knob_validation_names_the_field():
  with pytest.raises(ValueError, match=r"knobs.noise=0.7 is outside \[0.0, 0.5\]"):
    check_knobs({**BASE, "noise": 0.7}, 16)
  with pytest.raises(ValueError, match="saturated \\+ rare \\+ dead"):
    check_knobs({**BASE, "saturated": 0.6, "rare": 0.5}, 16)
  with pytest.raises(ValueError, match="rare_rate"):
    check_knobs({**BASE, "rare_rate": 0.1}, 16)
  with pytest.raises(ValueError, match="missing fields \\['noise'\\]"):
    check_knobs({k: v for k, v in BASE.items() if k != "noise"}, 16)


# ----------------------------------------------------------------------------
# Policy sampling and the judge.
# ----------------------------------------------------------------------------

def test_sample_types_follow_the_policy():
  logits = jnp.log(jnp.array([[0.5, 0.0, 0.3, 0.2]]))   # type 1 has probability 0
  u = jax.random.uniform(jax.random.key(0), (1, 200_000))
  types = np.asarray(policy.sample_types(u, logits))
  freq = np.bincount(types[0], minlength=4) / types.size
  np.testing.assert_allclose(freq, [0.5, 0.0, 0.3, 0.2], atol=0.005)
  assert freq[1] == 0.0


def test_policy_logits_by_hand():
  """init + (1 - s) table + s (features @ shared + c bias); held-out prompts have no table."""
  rng = np.random.default_rng(0)
  p, m, f = 3, 5, 2
  params = policy.PolicyParams(*(jnp.float32(rng.normal(size=shape))
                                 for shape in ((p, m), (f, m), (m,))))
  world = _world(p=1000)[0]._replace(init_logits=jnp.float32(rng.normal(size=(p, m))),
                                     features=jnp.float32(rng.normal(size=(p, f))))
  for s, c in ((0.0, 1.0), (0.3, 0.0), (1.0, 1.0)):
    knobs = make_knobs({**BASE, "policy_sharing": s, "policy_bias": c}, 16)
    shared = np.asarray(world.features) @ np.asarray(params.shared) + c * np.asarray(params.bias)
    # atol: the logits are sums of O(1) terms, so one that cancels to near 0 (-0.0023) keeps
    # float32's absolute error of its terms (1e-7), which another order of the adds moves.
    np.testing.assert_allclose(policy.policy_logits(params, world, knobs),
                               world.init_logits + (1 - s) * params.table + s * shared, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(policy.heldout_logits(params, world, knobs),
                               world.init_logits + s * shared, rtol=1e-5, atol=1e-6)


@settings(max_examples=8, deadline=None)
@given(st.floats(0.0, 0.5), st.floats(0.0, 0.9), st.integers(0, 2 ** 31 - 1))
def test_judge_frequencies(noise, invalid, seed):
  """met ~ Bernoulli((1 - noise) r + noise (1 - r)) among valid verdicts, valid ~ 1 - invalid."""
  raw = jnp.array([[[0.0, 1.0, 0.3, 0.75]]])                          # [P=1, M=1, K=4]
  bounds = judge.verdict_bounds(raw, noise, invalid)
  types = jnp.zeros((1, 40_000), jnp.int32)
  words = jax.random.bits(jax.random.key(seed), (2,), jnp.uint32)
  scores, valid = jax.device_get(_judge(words, bounds, types))
  n = valid.shape[1]
  assert abs(valid.mean() - (1 - invalid)) < 5 * np.sqrt(invalid * (1 - invalid) / (4 * n)) + 1e-4
  q = np.asarray(raw[0, 0]) * (1 - 2 * noise) + noise
  for k in range(4):
    v = valid[0, :, k]
    if v.sum() > 100:
      met = scores[0, v, k].mean()
      assert abs(met - q[k]) < 5 * np.sqrt(q[k] * (1 - q[k]) / v.sum()) + 1e-4, (k, met, q[k])


_judge = jax.jit(judge.judge)


def test_hashed_uniforms_are_uniform_and_key_dependent():
  words = jnp.array([12345, 678910], jnp.uint32)
  x = np.asarray(judge.uniform16_bits(words, (64, 64, 16)), np.float64) / 65536
  assert x.min() >= 0 and x.max() < 1
  counts = np.histogram(x, bins=32, range=(0, 1))[0]
  expected = x.size / 32
  assert np.sum((counts - expected) ** 2 / expected) < 70  # chi-square, 31 dof (p ~ 1e-4)
  assert abs(np.corrcoef(x.ravel()[:-1], x.ravel()[1:])[0, 1]) < 0.02
  other = np.asarray(judge.uniform16_bits(words + jnp.uint32(1), (64, 64, 16)))
  assert np.mean(other == np.asarray(x * 65536)) < 0.01
