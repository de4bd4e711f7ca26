"""The policy update: micro-batched gradients equal one pass's, log-probs are the sampling
distribution's, and the state's precision settings (reference, moments) do what they say."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from focal import aggregators, grpo, microbatch, sampling, update
from focal.batch import Rollouts
from focal.iteration import (GRPOSettings, init_train_state, make_engine, make_optimizer,
                             sample_rollouts)
from focal.models.transformer import ModelConfig, init_model, token_logprobs
from tests.test_iteration import EOS, PAD, grade, hand_rollouts, make_batch

# One layer: these tests compile a learn step per setting, and depth only costs compile time.
CFG = ModelConfig(vocab_size=260, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                  d_ff=64, max_seq_len=64)
B, G = 3, 4


def run_update(settings, lr=0.1, params=None, batch_shards=1):
  """(params after `policy_update` with SGD(lr), per-update metrics) on fixed rollouts."""
  graphdef, init = init_model(CFG, jax.random.key(0))
  params = init if params is None else params
  tx = optax.sgd(lr)
  state = init_train_state(params, tx, aggregators.make("category_balanced"), num_prompts=8,
                           max_criteria=3, rng=jax.random.key(1))
  batch, rollouts = make_batch(B), hand_rollouts(B * G, 8, seed=3)
  adv = jnp.asarray(np.random.default_rng(0).normal(size=B * G), jnp.float32)

  @jax.jit
  def go(state):
    new, _, inner = update.policy_update(graphdef, tx, settings, state, batch, rollouts, adv,
                                         jax.random.key(7), batch_shards)
    return new, inner

  return go(state)


def settings(**kw):
  return GRPOSettings(**{"group_size": G, "max_new_tokens": 8, "eos_id": EOS, "pad_id": PAD, **kw})


def assert_same_update(a, b, atol=1e-5):
  (pa, ma), (pb, mb) = a, b
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol), pa, pb)
  assert set(ma) == set(mb)
  for key in ma:
    np.testing.assert_allclose(ma[key], mb[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", grpo.LOSS_AGGREGATIONS)
def test_accumulated_mini_batches_equal_one_pass(aggregation):
  """mu = 2 passes of 2 mini-batches of 6 rollouts, beta > 0: micro-batches of 2 rollouts (the
  old-policy and reference passes too, 6 chunks) give the same four updates and metrics."""
  kw = dict(mu=2, num_minibatches=2, beta=0.05, loss_aggregation=aggregation)
  one = run_update(settings(**kw))
  assert_same_update(run_update(settings(micro_batch_size=2, **kw)), one)
  assert one[1]["grad_norm"].shape == (4,)


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", grpo.LOSS_AGGREGATIONS)
@pytest.mark.parametrize("micro", [1, 4, 6])
def test_every_micro_batch_size_equals_one_pass(aggregation, micro):
  """Every aggregation on the grouped path, with rows (h) of 1, 4 (whole groups) and 2."""
  kw = dict(beta=0.05, loss_aggregation=aggregation)
  assert_same_update(run_update(settings(micro_batch_size=micro, **kw), lr=1.0),
                     run_update(settings(**kw), lr=1.0))


STOPS = tuple(range(97, 140))  # a random policy stops within its 8 tokens now and then


def sample_at(graphdef, params, batch, temperature):
  return sampling.sample(graphdef, params, batch.tokens, batch.mask, jax.random.key(3),
                         max_new_tokens=8, temperature=temperature, eos_id=STOPS, pad_id=PAD,
                         group_size=G)


def test_one_pass_scores_the_sampling_distribution_and_micro_batches_change_nothing():
  """At T = 0.7, beta > 0, one pass over one mini-batch (the grouped path):
  - the chunked log-prob pass (the old-policy and reference passes) gives the sampler's own
    `SampleOutput.logprobs`;
  - micro-batches of 6 rollouts (3 prompts x 2 of their rollouts) update as one pass does;
  - that update (SGD, lr 1: minus the gradient) is the gradient of the GRPO loss written out
    with per-row log_softmax(logits / T), and not the one at T = 1 (TRL, verl and OpenRLHF
    score at T)."""
  graphdef, params = init_model(CFG, jax.random.key(0))
  batch, t = make_batch(B), 0.7
  out = sample_at(graphdef, params, batch, t)
  rollouts, mask = Rollouts(out.tokens, out.mask), np.asarray(out.mask)
  assert 0 < mask.sum() < mask.size
  lay = microbatch.layout(B, G, 4)  # three chunks of one prompt's group
  logp = jax.jit(lambda p: update.logprobs_in_chunks(graphdef, batch, rollouts, lay, t, p))(params)
  np.testing.assert_allclose(np.asarray(logp)[mask], np.asarray(out.logprobs)[mask],
                             rtol=1e-5, atol=2e-5)

  adv = jnp.linspace(-1.0, 1.0, B * G)
  tx = optax.sgd(1.0)
  state = init_train_state(params, tx, aggregators.make("category_balanced"), 8, 3,
                           jax.random.key(1))

  def focal_update(micro):
    s = settings(temperature=t, beta=0.05, micro_batch_size=micro)
    new, _, inner = jax.jit(lambda st: update.policy_update(
        graphdef, tx, s, st, batch, rollouts, adv, jax.random.key(0)))(state)
    return new, inner

  one, micro = focal_update(0), focal_update(6)
  assert microbatch.layout(B, G, 6).rows == 2
  assert_same_update(micro, one)

  def by_hand(params, temperature):
    tokens = jnp.concatenate([jnp.repeat(batch.tokens, G, 0), rollouts.tokens], 1)
    full = jnp.concatenate([jnp.repeat(batch.mask, G, 0), rollouts.mask], 1)
    lp = token_logprobs(graphdef, params, tokens, full, temperature=temperature)
    lp = lp[:, batch.tokens.shape[1] - 1:]
    # At the first update the policy is the reference: the k3 term and its gradient are 0.
    per_token = -jnp.exp(lp - jax.lax.stop_gradient(lp)) * adv[:, None]
    m = rollouts.mask.astype(jnp.float32)
    return jnp.mean(jnp.sum(per_token * m, -1) / jnp.maximum(jnp.sum(m, -1), 1))

  grad = jax.jit(jax.grad(by_hand))
  expected = grad(params, t)
  got = jax.tree.map(jnp.subtract, params, one[0])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, expected)
  assert float(optax.global_norm(got)) == pytest.approx(float(one[1]["grad_norm"][0]), rel=1e-5)
  at_one = grad(params, 1.0)
  diff = optax.global_norm(jax.tree.map(jnp.subtract, at_one, expected))
  assert float(diff) > 0.05 * float(optax.global_norm(expected))


def test_micro_batched_rollouts_draw_the_same_tokens():
  """Sampling 4 rollouts per call (one prompt's group) draws what one call over all 12 draws:
  each chunk takes its rows' slices of the same uniforms."""
  graphdef, params = init_model(CFG, jax.random.key(0))
  batch = make_batch(B)
  whole = sample_at(graphdef, params, batch, 0.7)  # the sampler's own program
  s = settings(temperature=0.7, eos_id=STOPS, rollout_micro_batch_size=4)
  chunked = jax.jit(lambda p: sample_rollouts(graphdef, p, batch, jax.random.key(3), s))(params)
  np.testing.assert_array_equal(whole.tokens, chunked.tokens)
  np.testing.assert_array_equal(whole.mask, chunked.mask)
  assert 0 < np.asarray(whole.mask).sum() < whole.mask.size


def test_a_micro_batch_size_that_does_not_divide_a_mini_batch_is_an_error():
  with pytest.raises(ValueError, match="micro_batch_size=4 does not divide the 6 rollouts"):
    run_update(settings(num_minibatches=2, micro_batch_size=4))


def test_without_a_reference_beta_must_be_zero_and_the_state_holds_none():
  graphdef, params = init_model(CFG, jax.random.key(0))
  tx = optax.sgd(0.1)
  state = init_train_state(params, tx, aggregators.make("category_balanced"), 8, 3,
                           jax.random.key(1), reference=False)
  assert state.ref_params is None
  batch, rollouts = make_batch(B), hand_rollouts(B * G, 8)
  with pytest.raises(ValueError, match="beta > 0 needs a reference policy"):
    update.policy_update(graphdef, tx, settings(beta=0.1), state, batch, rollouts,
                         jnp.ones(B * G), jax.random.key(0))


@pytest.mark.slow
def test_bfloat16_parameters_train_with_float32_second_moments():
  """param_dtype bfloat16 end to end: the step runs, parameters stay bfloat16 and move; AdamW's
  nu is float32 (bfloat16 would round its 0.001 g^2 steps away), mu follows optimizer.mu_dtype;
  the reference is stored in the compute dtype."""
  cfg = dataclasses.replace(CFG, param_dtype="bfloat16", dtype="bfloat16")
  graphdef, params = init_model(cfg, jax.random.key(0))
  tx = make_optimizer(1e-2, mu_dtype="bfloat16")
  agg = aggregators.make("category_balanced")
  state = init_train_state(params, tx, agg, 8, 3, jax.random.key(1), ref_dtype="bfloat16")
  adam = state.opt_state[1][0]
  assert {x.dtype for x in jax.tree.leaves(adam.mu)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(adam.nu)} == {jnp.dtype(jnp.float32)}
  assert {x.dtype for x in jax.tree.leaves(state.ref_params)} == {jnp.dtype(jnp.bfloat16)}
  engine = make_engine(graphdef, tx, agg, settings(beta=0.05))
  batch, rollouts = make_batch(B), hand_rollouts(B * G, 8)
  scores = grade(jnp.repeat(batch.features, G, 0), rollouts.tokens, rollouts.mask)
  new, m = jax.jit(engine.learn_step)(state, batch, rollouts, scores, jnp.ones(scores.shape, bool))
  assert np.isfinite(float(m["loss"])) and float(m["grad_norm"]) > 0
  assert {x.dtype for x in jax.tree.leaves(new.params)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(new.opt_state[1][0].nu)} == {jnp.dtype(jnp.float32)}
  moved = [bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(params),
                                                  jax.tree.leaves(new.params))]
  assert all(moved)
  with pytest.raises(ValueError, match="mu_dtype"):
    make_optimizer(mu_dtype="float16")
