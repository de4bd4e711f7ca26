"""The jitted GRPO iteration: runs, is deterministic, splits around host graders, resumes exactly."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from focal import aggregators
from focal.checkpoint import Checkpointer
from focal.models.transformer import (ModelConfig, forward, grouped_response_logprobs, init_model,
                                     positions_from_mask)
from focal.rubric import RubricBatch
from focal.batch import PromptBatch, Rollouts
from focal.iteration import (GRPOSettings, clipped_ratio, init_train_state, make_engine, make_optimizer,
                         response_logprobs)

CFG = ModelConfig(vocab_size=260, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16,
                  d_ff=64, max_seq_len=64)
EOS, PAD = 258, 256
SETTINGS = GRPOSettings(group_size=4, max_new_tokens=8, eos_id=EOS, pad_id=PAD, beta=0.05, mu=2,
                        num_minibatches=2)


def grade(features, response, mask):
  """Three checks: contains the prompt's target byte, is short, starts with 'b'."""
  contains = jnp.any((response == features[:, :1]) & mask, -1)
  short = jnp.sum(mask, -1) <= features[:, 1]
  starts = response[:, 0] == ord("b")
  return jnp.stack([contains, short, starts], -1).astype(jnp.float32)


def make_batch(b=3):
  tokens = np.full((b, 5), PAD, np.int32)
  mask = np.zeros((b, 5), bool)
  for i in range(b):  # prompts of different lengths, left-padded
    n = 3 + i % 3
    tokens[i, 5 - n:] = 97 + np.arange(n)
    mask[i, 5 - n:] = True
  features = np.stack([97 + np.arange(b), np.full(b, 4)], -1).astype(np.int32)
  rubric = RubricBatch.from_lists(
      [[{"weight": 3, "category": 0, "required": True}, {"weight": 1, "category": 1},
        {"weight": -1, "category": 1}]] * b, prompt_ids=list(range(b)))
  return PromptBatch(jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(features), rubric)


def setup(aggregator="category_balanced", settings=SETTINGS, seed=0):
  graphdef, params = init_model(CFG, jax.random.key(seed))
  tx = make_optimizer(1e-3)
  agg = aggregators.make(aggregator)
  state = committed(init_train_state(params, tx, agg, num_prompts=8, max_criteria=3,
                                     rng=jax.random.key(1)))
  engine = make_engine(graphdef, tx, agg, settings, grader=grade)
  return state, engine


def committed(tree):
  """The tree placed on the device, as a jitted step's outputs are: jit keys its cache on
  whether an input is committed, so a fresh (uncommitted) state would compile the step once
  for the first call and again for the state it returns."""
  return jax.device_put(tree, jax.devices()[0])


@pytest.fixture(scope="module")
def compiled():
  """One engine, jitted once, shared by the tests (compiling dominates their time)."""
  state, engine = setup()
  return state, engine, jax.jit(engine.train_step), jax.jit(engine.rollout_step), \
      jax.jit(engine.learn_step)


def test_train_step_updates_state_and_reports_metrics(compiled):
  state, _, step, _, _ = compiled
  batch = make_batch()
  new_state, m = step(state, batch)
  assert int(new_state.step) == 1
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a != b), state.params, new_state.params))
  assert any(bool(c) for c in changed)
  # The reference policy is frozen.
  same = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.all(a == b), state.ref_params, new_state.ref_params))
  assert all(bool(c) for c in same)
  assert m["criterion_pass_rate"].shape == (3,)
  np.testing.assert_allclose(jnp.sum(m["aggregator_weight"]), 1.0, rtol=1e-5)
  for key in ("reward_mean", "loss", "kl", "grad_norm", "zero_variance_groups", "response_length"):
    assert np.isfinite(float(m[key])), key
  assert 0 <= float(m["zero_variance_groups"]) <= 1


def test_split_steps_equal_the_composed_step(compiled):
  state, _, step, rollout_step, learn_step = compiled
  batch = make_batch()
  s1, m1 = step(state, batch)
  s2, rollouts = rollout_step(state, batch)
  feats = jnp.repeat(batch.features, SETTINGS.group_size, axis=0)
  scores = np.asarray(grade(feats, rollouts.tokens, rollouts.mask))  # "host" grading
  s2, m2 = learn_step(s2, batch, rollouts, scores, np.ones(scores.shape, bool))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), s1.params, s2.params)
  np.testing.assert_allclose(m1["reward_mean"], m2["reward_mean"])


def test_invalid_verdicts_from_a_host_grader_are_counted(compiled):
  state, _, _, rollout_step, learn_step = compiled
  batch = make_batch()
  state, rollouts = rollout_step(state, batch)
  scores = np.ones((12, 3), np.float32)
  valid = np.ones((12, 3), bool)
  valid[0] = False
  _, m = learn_step(state, batch, rollouts, scores, valid)
  assert float(m["rollouts_without_valid"]) == 1
  np.testing.assert_allclose(m["invalid_verdict_frac"], 3 / 36, rtol=1e-6)


def test_resume_repeats_an_uninterrupted_run(tmp_path, compiled):
  batch = make_batch()
  state, _, step, _, _ = compiled
  uninterrupted = state
  for _ in range(4):
    uninterrupted, m_full = step(uninterrupted, batch)

  first = state
  for _ in range(2):
    first, _ = step(first, batch)
  ckpt = Checkpointer(str(tmp_path / "ckpt"), keep=2)
  ckpt.save(2, first, {"data_position": 2, "metrics": {"reward": 0.5}})
  ckpt.close()
  fresh, _ = setup()
  restored, meta = Checkpointer(str(tmp_path / "ckpt")).restore(fresh)
  assert meta["data_position"] == 2
  assert type(restored.opt_state) is type(fresh.opt_state)
  for _ in range(2):
    restored, m_resumed = step(restored, batch)
  jax.tree.map(np.testing.assert_array_equal, jax.random.key_data(restored.rng),
               jax.random.key_data(uninterrupted.rng))
  jax.tree.map(np.testing.assert_array_equal, restored.params, uninterrupted.params)
  jax.tree.map(np.testing.assert_array_equal, m_resumed, m_full)


def test_checkpointer_keeps_best_by_metric(tmp_path):
  small = {"x": jnp.arange(3.0)}
  ckpt = Checkpointer(str(tmp_path / "best"), keep=2, best_metric="reward", async_save=False)
  for step, reward in [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.2)]:
    ckpt.save(step, small, {"metrics": {"reward": reward}})
  ckpt.wait()
  assert ckpt.best_step() == 2
  assert sorted(ckpt.all_steps()) == [2, 3]
  with pytest.raises(ValueError, match="best_metric 'reward' missing"):
    ckpt.save(5, small, {"metrics": {}})


def test_settings_validation():
  with pytest.raises(ValueError, match="group_size"):
    GRPOSettings(group_size=1)
  with pytest.raises(ValueError, match="loss_aggregation"):
    GRPOSettings(loss_aggregation="sum")


def low_bytes(features, response, mask):
  """Dense, learnable verdicts: the share of response tokens below 128 (twice), and a pitfall
  on the share at or above 200 (flipped for training, so all three reward low tokens)."""
  del features
  n = jnp.maximum(jnp.sum(mask, -1), 1)
  low = jnp.sum((response < 128) & mask, -1) / n
  high = jnp.sum((response >= 200) & mask, -1) / n
  return jnp.stack([low, low, high], -1).astype(jnp.float32)


def test_default_single_pass_trains():
  """mu=1, one mini-batch, beta=0 (the defaults): the old log-probs are the loss's own forward
  with its gradient stopped; without that stop the policy gradient would be exactly 0."""
  settings = GRPOSettings(group_size=4, max_new_tokens=8, eos_id=EOS, pad_id=PAD)
  assert (settings.mu, settings.num_minibatches, settings.beta) == (1, 1, 0.0)
  graphdef, params = init_model(CFG, jax.random.key(0))
  tx = make_optimizer(3e-2)
  agg = aggregators.make("category_balanced")
  state = committed(init_train_state(params, tx, agg, num_prompts=8, max_criteria=3,
                                     rng=jax.random.key(1)))
  step = jax.jit(make_engine(graphdef, tx, agg, settings, grader=low_bytes).train_step)
  batch = make_batch()
  first, m = step(state, batch)
  assert float(m["grad_norm"]) > 0
  assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(state.params),
                                                     jax.tree.leaves(first.params)))
  rewards = [float(m["reward_mean"])]
  for _ in range(11):  # the reward starts near 0.56 and passes 0.85 within a dozen steps
    first, m = step(first, batch)
    rewards.append(float(m["reward_mean"]))
  assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.2, rewards


def test_clipped_ratio_counts_rollouts_cut_before_a_stop_token():
  tokens = np.asarray([[5, EOS, PAD],   # stopped early
                       [5, 6, 7],       # ran out of tokens: clipped
                       [5, 6, EOS],     # stopped on its last allowed token
                       [5, 6, 9]], np.int32)
  mask = np.asarray([[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]], bool)
  rollouts = Rollouts(jnp.asarray(tokens), jnp.asarray(mask))
  assert float(clipped_ratio(rollouts, 3, EOS)) == 2 / 4
  assert float(clipped_ratio(rollouts, 3, (EOS, 9))) == 1 / 4  # 9 also ends a turn
  assert float(clipped_ratio(rollouts, 3, None)) == 3 / 4      # nothing stops


def hand_rollouts(n=12, length=8, seed=0):
  """Rollouts of random lengths (some ending in EOS), padded after their end."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(97, 123, (n, length)).astype(np.int32)
  lengths = rng.integers(1, length + 1, n)
  mask = np.arange(length)[None, :] < lengths[:, None]
  tokens[np.arange(n), lengths - 1] = np.where(rng.random(n) < 0.5, EOS,
                                               tokens[np.arange(n), lengths - 1])
  return Rollouts(jnp.asarray(np.where(mask, tokens, PAD)), jnp.asarray(mask))


def numpy_entropy(graphdef, params, batch, rollouts, group):
  """[N, L] entropy of the policy at each response position, from one plain forward over each
  whole prompt + response sequence, in float64 numpy."""
  tokens = np.concatenate([np.repeat(batch.tokens, group, 0), rollouts.tokens], 1)
  mask = np.concatenate([np.repeat(batch.mask, group, 0), rollouts.mask], 1)
  logits, _ = forward(graphdef, params, jnp.asarray(tokens),
                      positions_from_mask(jnp.asarray(mask)), jnp.asarray(mask))
  p_len, length = batch.tokens.shape[1], rollouts.tokens.shape[1]
  z = np.asarray(logits, np.float64)[:, p_len - 1:p_len - 1 + length]
  logp = z - z.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  return -(np.exp(logp) * logp).sum(-1)


def test_entropy_is_the_policy_entropy_over_the_rollout_tokens(compiled):
  """The logged entropy (single pass: the policy that sampled, before its update) is the token
  mean of -sum p log p at each response position (the grouped log-prob path); the per-row path
  of multi-pass updates returns the same entropies."""
  state = compiled[0]
  graphdef, _ = init_model(CFG, jax.random.key(0))
  settings = GRPOSettings(group_size=4, max_new_tokens=8, eos_id=EOS, pad_id=PAD)
  engine = make_engine(graphdef, make_optimizer(1e-3), aggregators.make("category_balanced"),
                       settings, grader=grade)
  batch, rollouts = make_batch(), hand_rollouts()
  scores = grade(jnp.repeat(batch.features, 4, axis=0), rollouts.tokens, rollouts.mask)
  _, m = jax.jit(engine.learn_step)(state, batch, rollouts, scores, jnp.ones(scores.shape, bool))
  expected = numpy_entropy(graphdef, state.params, batch, rollouts, 4)
  mask = np.asarray(rollouts.mask)
  np.testing.assert_allclose(float(m["entropy"]), expected[mask].mean(), rtol=1e-5)
  _, per_row = response_logprobs(graphdef, state.params, jnp.repeat(batch.tokens, 4, 0),
                                 jnp.repeat(batch.mask, 4, 0), rollouts, with_entropy=True)
  np.testing.assert_allclose(np.asarray(per_row)[mask], expected[mask], rtol=1e-4, atol=1e-5)
  assert np.all(expected[mask] <= np.log(CFG.vocab_size) + 1e-9)


def test_asking_for_entropy_leaves_log_probs_and_gradients_bit_identical():
  graphdef, params = init_model(dataclasses.replace(CFG, n_layers=1), jax.random.key(0))
  batch, rollouts = make_batch(), hand_rollouts(seed=1)

  def loss(params, with_entropy):
    out = grouped_response_logprobs(graphdef, params, batch.tokens, batch.mask, rollouts.tokens,
                                    rollouts.mask, 4, with_entropy=with_entropy)
    logp = out[0] if with_entropy else out
    return jnp.sum(logp * rollouts.mask), logp

  plain = jax.jit(jax.value_and_grad(lambda p: loss(p, False), has_aux=True))(params)
  with_entropy = jax.jit(jax.value_and_grad(lambda p: loss(p, True), has_aux=True))(params)
  jax.tree.map(np.testing.assert_array_equal, plain, with_entropy)
