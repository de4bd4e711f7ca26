"""Static aggregators: hand-computed values, a loop-based reference, and properties."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from focal import aggregators
from focal.aggregators import static
from focal.rubric import RubricBatch

STATIC = ("weighted_sum", "uniform", "strict", "category_balanced")


def _crit(weight, category=0, required=False):
  return {"weight": weight, "category": category, "required": required}


@functools.lru_cache(maxsize=None)  # one jitted update per (name, hparams): compiled per shape once
def _jitted(name, hp):
  agg = aggregators.make(name, **dict(hp))
  return agg, jax.jit(agg.update)


def _run(name, scores, valid, rubric, **hp):
  agg, update = _jitted(name, tuple(sorted(hp.items())))
  state = agg.init(rubric.num_prompts, rubric.max_criteria)
  rewards, _, metrics = update(jnp.asarray(scores, jnp.float32), jnp.asarray(valid, bool),
                               rubric, state)
  return np.asarray(rewards), metrics


# One prompt: an essential criterion (w=5, category 0, required), an optional
# one (w=1, category 1) and a pitfall (w=-2, category 1); two rollouts.
RUBRIC = RubricBatch.from_lists([[_crit(5, 0, True), _crit(1, 1), _crit(-2, 1)]], max_criteria=4)
SCORES = np.array([[[1, 0, 0, 0], [0, 1, 1, 0]]], np.float32)
VALID = np.ones_like(SCORES, bool)


@pytest.mark.parametrize("name, mode, expected", [
    # flip: s' = [1, 0, 1] and [0, 1, 0] with w' = [5, 1, 2].
    ("weighted_sum", "flip", [7 / 8, 1 / 8]),
    ("weighted_sum", "signed", [5 / 6, (1 - 2) / 6]),
    ("uniform", "flip", [2 / 3, 1 / 3]),
    ("uniform", "signed", [1 / 2, (1 - 1) / 2]),
    ("strict", "flip", [1.0, 0.0]),
    ("strict", "signed", [1.0, 0.0]),
    # category 0 = {5}; category 1 = {1, pitfall 2}: (1 + 2/3) / 2 and (0 + 1/3) / 2.
    ("category_balanced", "flip", [5 / 6, 1 / 6]),
    # signed: category 1's mass is its positive weight 1: (1 + 0) / 2 and (0 + (1 - 2)) / 2.
    ("category_balanced", "signed", [0.5, -0.5]),
])
def test_golden_values(name, mode, expected):
  rewards, _ = _run(name, SCORES, VALID, RUBRIC, pitfall_mode=mode)
  np.testing.assert_allclose(rewards[0], expected, rtol=1e-6)


def test_weights_metric_is_abs_normalised():
  _, m = _run("weighted_sum", SCORES, VALID, RUBRIC)
  np.testing.assert_allclose(m["weights"][0], [5 / 8, 1 / 8, 2 / 8, 0], rtol=1e-6)
  _, m = _run("category_balanced", SCORES, VALID, RUBRIC)
  np.testing.assert_allclose(m["weights"][0], [1 / 2, 1 / 6, 2 / 6, 0], rtol=1e-6)


def test_invalid_verdicts_leave_numerator_and_denominator():
  valid = VALID.copy()
  valid[0, 0, 0] = False  # first rollout: the essential verdict is missing
  rewards, m = _run("weighted_sum", SCORES, valid, RUBRIC)
  np.testing.assert_allclose(rewards[0], [2 / 3, 1 / 8], rtol=1e-6)
  np.testing.assert_allclose(m["invalid_verdict_frac"], 1 / 6, rtol=1e-6)
  assert float(m["rollouts_without_valid"]) == 0
  # category_balanced: category 0 disappears for rollout 0; only category 1 counts.
  rewards, _ = _run("category_balanced", SCORES, valid, RUBRIC)
  np.testing.assert_allclose(rewards[0], [2 / 3, 1 / 6], rtol=1e-6)


def test_rollout_without_valid_verdict_gets_group_mean():
  scores = np.array([[[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0]]], np.float32)
  valid = np.ones_like(scores, bool)
  valid[0, 2] = False
  for name in STATIC:
    rewards, m = _run(name, scores, valid, RUBRIC)
    np.testing.assert_allclose(rewards[0, 2], rewards[0, :2].mean(), rtol=1e-6)
    assert float(m["rollouts_without_valid"]) == 1


def test_group_without_any_valid_verdict_is_zero():
  rewards, m = _run("weighted_sum", SCORES, np.zeros_like(VALID), RUBRIC)
  np.testing.assert_array_equal(rewards, 0)
  assert float(m["rollouts_without_valid"]) == 2
  assert float(m["invalid_verdict_frac"]) == 1.0


def test_single_criterion_category_and_all_equal_group():
  rubric = RubricBatch.from_lists([[_crit(4, 0), _crit(1, 1), _crit(3, 1)]])
  scores = np.tile(np.array([1.0, 0.0, 1.0], np.float32), (1, 3, 1))
  rewards, _ = _run("category_balanced", scores, np.ones_like(scores, bool), rubric)
  np.testing.assert_allclose(rewards, np.full((1, 3), (1 + 3 / 4) / 2), rtol=1e-6)
  rewards, _ = _run("weighted_sum", scores, np.ones_like(scores, bool), rubric)
  np.testing.assert_allclose(rewards, np.full((1, 3), 7 / 8), rtol=1e-6)


def test_strict_without_required_flags_requires_everything():
  rubric = RubricBatch.from_lists([[_crit(1), _crit(1)]])
  scores = np.array([[[1, 1], [1, 0]]], np.float32)
  rewards, _ = _run("strict", scores, np.ones_like(scores, bool), rubric)
  np.testing.assert_array_equal(rewards, [[1, 0]])


def test_strict_counts_a_verdict_exactly_on_the_threshold_as_a_pass():
  # Both criteria required; the pitfall passes when avoided (score below 0.5).
  rubric = RubricBatch.from_lists([[_crit(1, 0, True), _crit(-1, 0, True)]])
  scores = [[[0.5, 0.0], [0.4999, 0.0], [1.0, 0.5]]]
  rewards, _ = _run("strict", scores, np.ones((1, 3, 2), bool), rubric)
  np.testing.assert_array_equal(rewards, [[1.0, 0.0, 0.0]])


def test_signed_rollout_with_only_pitfall_verdicts_is_scored_by_their_absolute_mass():
  # w = [0.5, -1]; criterion 0 has no verdict in rollouts 0 and 1, so only the pitfall counts:
  # hit -> -1/1, avoided -> 0/1. Rollout 2 has both and meets only c0: 0.5/0.5, the positive
  # mass however small (uniform: signs [1, -1], the same rewards).
  rubric = RubricBatch.from_lists([[_crit(0.5), _crit(-1)]])
  scores = np.array([[[0, 1], [0, 0], [1, 0]]], np.float32)
  valid = np.ones((1, 3, 2), bool)
  valid[0, :2, 0] = False
  expected = [[-1.0, 0.0, 1.0]]
  for name in ("weighted_sum", "uniform"):
    rewards, m = _run(name, scores, valid, rubric, pitfall_mode="signed")
    np.testing.assert_allclose(rewards, expected)
    assert float(m["rollouts_without_valid"]) == 0.0
  np.testing.assert_allclose(
      static.static_reward(jnp.asarray(scores), jnp.asarray(valid), rubric), expected)


def test_make_rejects_unknown_names_and_hparams():
  with pytest.raises(ValueError, match="registered: .*category_balanced.*weighted_sum"):
    aggregators.make("weighted_mean")
  with pytest.raises(ValueError, match="Accepted: pitfall_mode"):
    aggregators.make("weighted_sum", gamma=2.0)
  with pytest.raises(ValueError, match="pitfall_mode must be one of"):
    aggregators.make("uniform", pitfall_mode="abs")


# ---------------------------------------------------------------------------
# A plain-Python reference, written from METHODS §2 without the shared algebra.
# ---------------------------------------------------------------------------


def reference(name, scores, valid, w, cat, req, mask, mode):
  b_n, g_n, k_n = scores.shape
  out = np.zeros((b_n, g_n))
  has = np.zeros((b_n, g_n), bool)
  for b in range(b_n):
    for g in range(g_n):
      items = []
      for k in range(k_n):
        if not (mask[b, k] and valid[b, g, k]):
          continue
        s, wk = scores[b, g, k], w[b, k]
        if mode == "flip" and wk < 0:
          s, wk = 1 - s, -wk
        items.append((s, wk, cat[b, k], k))
      if name == "strict":
        targets = [k for k in range(k_n) if mask[b, k] and req[b, k]] or \
                  [k for k in range(k_n) if mask[b, k]]
        checked = [k for k in targets if valid[b, g, k]]
        if checked:
          has[b, g] = True
          ok = all((scores[b, g, k] >= 0.5) != (w[b, k] < 0) for k in checked)
          out[b, g] = float(ok)
        continue
      if name == "uniform":
        items = [(s, np.sign(wk), c, k) for s, wk, c, k in items]
      if name in ("weighted_sum", "uniform"):
        den = sum(wk for _, wk, _, _ in items if wk > 0) or sum(abs(wk) for _, wk, _, _ in items)
        if den > 0:
          has[b, g] = True
          out[b, g] = sum(s * wk for s, wk, _, _ in items) / den
      else:
        cats = {}
        for item in items:
          cats.setdefault(item[2], []).append(item)
        terms = []
        for members in cats.values():
          mass = sum(wk for _, wk, _, _ in members)
          if mode == "signed":
            pos = sum(wk for _, wk, _, _ in members if wk > 0)
            mass = pos if pos > 0 else sum(abs(wk) for _, wk, _, _ in members)
          if mass != 0:
            terms.append(sum(s * wk for s, wk, _, _ in members) / mass)
        if terms:
          has[b, g] = True
          out[b, g] = sum(terms) / len(terms)
    if has[b].any():
      out[b, ~has[b]] = out[b, has[b]].mean()
  return out


@st.composite
def batches(draw, positive_only=False, max_k=6):
  b_n = draw(st.integers(1, 3))
  g_n = draw(st.integers(1, 4))
  k_n = draw(st.integers(1, max_k))
  seed = draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  mask = rng.random((b_n, k_n)) < 0.8
  mask[:, 0] = True
  lo = 0.5 if positive_only else -3.0
  w = np.round(rng.uniform(lo, 5.0, (b_n, k_n)), 2)
  w[:, 0] = np.abs(w[:, 0]) + 0.5
  w[np.abs(w) < 0.1] = 1.0
  cat = rng.integers(0, 3, (b_n, k_n))
  req = rng.random((b_n, k_n)) < 0.3
  binary = draw(st.booleans())
  scores = rng.random((b_n, g_n, k_n)).astype(np.float32)
  if binary:
    scores = (scores < 0.5).astype(np.float32)
  valid = rng.random((b_n, g_n, k_n)) < 0.85
  return scores, valid, w.astype(np.float32), cat, req, mask


PROPERTY = settings(max_examples=25, deadline=None)
MAX_B, MAX_G, MAX_K = 3, 4, 9  # every property example runs at this padded shape (one compile)


def _padded(scores, valid, w, cat, req, mask):
  """The batch at [MAX_B, MAX_G, MAX_K], as a RubricBatch and verdicts, so each (name, mode)
  compiles once. Padding is the interface: criterion slots with mask=False (junk verdicts),
  rollouts with no valid verdict (they take their group's mean; the real ones are unchanged)
  and copies of prompt 0 as extra prompts. Callers read [:b, :g] of the rewards."""
  b_n, g_n, k_n = scores.shape
  pad = [(0, MAX_B - b_n), (0, MAX_G - g_n), (0, MAX_K - k_n)]
  scores = np.pad(scores, pad, constant_values=0.0)
  valid = np.pad(valid, pad, constant_values=False)
  valid[:, :, k_n:] = True
  valid[:, g_n:] = False
  rows = lambda a, v: np.pad(np.pad(a, [(0, 0), (0, MAX_K - k_n)], constant_values=v),
                             [(0, MAX_B - b_n), (0, 0)], mode="edge")
  # Junk unlike test_padding_invariance's own (weight 7, verdict 1), so that test compares
  # different inputs.
  rubric = RubricBatch.from_arrays(rows(w, -3.0), rows(cat, 1), rows(req, False),
                                   rows(mask, False), np.arange(MAX_B))
  return scores, valid, rubric


def _run_padded(name, batch, **hp):
  """Rewards [b, g] and weights [b, k] of an unpadded batch, computed at the padded shape."""
  b_n, g_n, k_n = batch[0].shape
  rewards, metrics = _run(name, *_padded(*batch), **hp)
  return rewards[:b_n, :g_n], np.asarray(metrics["weights"])[:b_n, :k_n]


@PROPERTY
@given(batches(), st.sampled_from(STATIC), st.sampled_from(("flip", "signed")))
def test_matches_loop_reference(batch, name, mode):
  scores, valid, w, cat, req, mask = batch
  rewards, _ = _run_padded(name, batch, pitfall_mode=mode)
  np.testing.assert_allclose(rewards, reference(name, scores, valid, w, cat, req, mask, mode),
                             rtol=1e-5, atol=1e-6)


@PROPERTY
@given(batches(), st.sampled_from(STATIC), st.integers(1, 3))
def test_padding_invariance(batch, name, extra):
  """`extra` junk slots (weight 7, verdict 1, valid) appended by hand change nothing; both runs
  then go through the same padded shape, which adds its own junk slots after these."""
  scores, valid, w, cat, req, mask = batch
  base_rewards, _ = _run_padded(name, batch)
  pad = lambda a, v: np.concatenate([a, np.full(a.shape[:-1] + (extra,), v, a.dtype)], -1)
  rewards, _ = _run_padded(name, (pad(scores, 1.0), pad(valid, True), pad(w, 7.0), pad(cat, 2),
                                  pad(req, True), pad(mask, False)))
  np.testing.assert_allclose(rewards, base_rewards, rtol=1e-5, atol=1e-6)


@PROPERTY
@given(batches(), st.sampled_from(STATIC), st.randoms(use_true_random=False))
def test_permutation_invariance(batch, name, rnd):
  scores, valid, w, cat, req, mask = batch
  perm = list(range(w.shape[-1]))
  rnd.shuffle(perm)
  a, wa = _run_padded(name, batch)
  b, wb = _run_padded(name, (scores[..., perm], valid[..., perm], w[:, perm], cat[:, perm],
                             req[:, perm], mask[:, perm]))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(wa[:, perm], wb, rtol=1e-5, atol=1e-7)


@PROPERTY
@given(batches(positive_only=False), st.sampled_from(STATIC))
def test_flipped_rewards_lie_in_unit_interval(batch, name):
  rewards, _ = _run(name, *_padded(*batch), pitfall_mode="flip")  # the padding's rewards too
  assert np.all(rewards >= -1e-6) and np.all(rewards <= 1 + 1e-6)


@pytest.mark.parametrize("name", STATIC)
def test_jit_equals_eager_and_vmap_equals_loop(name):
  rng = np.random.default_rng(0)
  rubric = RubricBatch.from_arrays(rng.uniform(-2, 5, (3, 5)) + 0.1, rng.integers(0, 3, (3, 5)),
                                   rng.random((3, 5)) < 0.5, np.ones((3, 5), bool), np.arange(3))
  scores = jnp.asarray(rng.random((4, 3, 6, 5)), jnp.float32)  # leading seed axis
  valid = jnp.asarray(rng.random((4, 3, 6, 5)) < 0.9)
  agg, update = _jitted(name, ())
  state = agg.init(3, 5)
  eager = agg.update(scores[0], valid[0], rubric, state)[0]
  np.testing.assert_allclose(update(scores[0], valid[0], rubric, state)[0], eager, rtol=1e-6)
  # The loop runs the jitted update just checked against eager: eager dispatch of the other
  # three seeds checked nothing more and was most of this test's time.
  loop = np.stack([update(scores[i], valid[i], rubric, state)[0] for i in range(4)])
  vmapped = jax.jit(jax.vmap(agg.update, in_axes=(0, 0, None, None)))(scores, valid, rubric, state)[0]
  np.testing.assert_allclose(vmapped, loop, rtol=1e-6)
