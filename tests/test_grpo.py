import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from focal import grpo


@pytest.mark.parametrize("ratio, adv, objective, grad_flows", [
    (0.5, 1.0, 0.5, True),     # below the trust region with A > 0: keep improving
    (1.0, 1.0, 1.0, True),
    (1.5, 1.0, 1.2, False),    # clipped at 1 + eps: no incentive to go further
    (0.5, -1.0, -0.8, False),  # clipped at 1 - eps with A < 0
    (1.0, -1.0, -1.0, True),
    (1.5, -1.0, -1.5, True),   # A < 0 and ratio too high: must still be pushed down
    (1.5, 2.0, 2.4, False),    # |A| != 1: the clipped branch is clip(r) * A, not clip(r) / A
    (0.5, -2.0, -1.6, False),
])
def test_clipped_surrogate_golden(ratio, adv, objective, grad_flows):
  old = jnp.zeros((1, 1))
  adv_arr = jnp.array([adv])
  f = lambda lp: grpo.clipped_surrogate(lp, old, adv_arr, 0.2, 0.2)[0, 0]
  lp = jnp.log(jnp.array([[ratio]]))
  np.testing.assert_allclose(f(lp), objective, rtol=1e-6)
  grad = jax.grad(f)(lp)[0, 0]
  # d(r A)/d log r = r A where the unclipped branch is active.
  np.testing.assert_allclose(grad, ratio * adv if grad_flows else 0.0, rtol=1e-6)


def test_asymmetric_clip():
  lp = jnp.log(jnp.array([[1.5, 0.5]]))
  obj = grpo.clipped_surrogate(lp, jnp.zeros((1, 2)), jnp.array([1.0]), 0.2, 0.28)
  np.testing.assert_allclose(obj, [[1.28, 0.5]], rtol=1e-6)


def test_k3_kl_values():
  logp = jnp.log(jnp.array([[0.5, 0.2]]))
  ref = jnp.log(jnp.array([[0.5, 0.4]]))
  # u = 1 -> 0; u = 2 -> 2 - log 2 - 1.
  np.testing.assert_allclose(grpo.k3_kl(logp, ref), [[0.0, 1 - np.log(2)]], rtol=1e-6)


@given(st.floats(-5, 5), st.floats(-5, 5))
@settings(max_examples=50, deadline=None)
def test_k3_kl_nonnegative(a, b):
  assert float(grpo.k3_kl(jnp.array([[a]]), jnp.array([[b]]))[0, 0]) >= -1e-6


def test_loss_aggregations_by_hand():
  per_token = jnp.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
  mask = jnp.array([[True, True, True], [True, False, False]])
  np.testing.assert_allclose(grpo.aggregate(per_token, mask, "seq_mean_token_mean"), (2 + 4) / 2)
  np.testing.assert_allclose(grpo.aggregate(per_token, mask, "token_mean"), 10 / 4)
  np.testing.assert_allclose(grpo.aggregate(per_token, mask, "token_mean", num_tokens=8.0), 10 / 8)
  np.testing.assert_allclose(grpo.aggregate(per_token, mask, "dr_grpo", max_len=5), 10 / 10)
  with pytest.raises(ValueError, match="needs max_len"):
    grpo.aggregate(per_token, mask, "dr_grpo")
  with pytest.raises(ValueError, match="unknown loss aggregation"):
    grpo.aggregate(per_token, mask, "sum")


def test_token_mean_over_minibatches_equals_full_batch():
  rng = np.random.default_rng(0)
  per_token = jnp.asarray(rng.random((4, 6)), jnp.float32)
  mask = jnp.asarray(rng.random((4, 6)) < 0.7)
  full = grpo.aggregate(per_token, mask, "token_mean")
  n = jnp.sum(mask)
  halves = sum(grpo.aggregate(per_token[i:i + 2], mask[i:i + 2], "token_mean", num_tokens=n)
               for i in (0, 2))
  np.testing.assert_allclose(halves, full, rtol=1e-6)


def test_on_policy_loss_gradient_is_policy_gradient():
  # At ratio 1 and beta 0 the gradient w.r.t. each token's log-prob is -A / (tokens in its seq) / N.
  logp = jnp.log(jnp.array([[0.3, 0.6], [0.2, 0.5]]))
  adv = jnp.array([1.0, -2.0])
  mask = jnp.array([[True, True], [True, False]])
  f = lambda lp: grpo.grpo_loss(lp, logp, logp, adv, mask)[0]
  np.testing.assert_allclose(jax.grad(f)(logp), [[-0.25, -0.25], [1.0, 0.0]], rtol=1e-6)


def test_kl_term_weighted_by_beta_and_metrics():
  logp = jnp.log(jnp.array([[0.5, 0.2]]))
  ref = jnp.log(jnp.array([[0.5, 0.4]]))
  mask = jnp.ones((1, 2), bool)
  loss0, m0 = grpo.grpo_loss(logp, logp, ref, jnp.array([0.0]), mask, beta=0.0)
  loss1, m1 = grpo.grpo_loss(logp, logp, ref, jnp.array([0.0]), mask, beta=0.1)
  np.testing.assert_allclose(loss0, 0.0, atol=1e-7)
  np.testing.assert_allclose(loss1, 0.1 * (1 - np.log(2)) / 2, rtol=1e-5)
  np.testing.assert_allclose(m1["kl"], (1 - np.log(2)) / 2, rtol=1e-5)
  assert float(m1["clip_frac"]) == 0.0


def test_lower_clip_bound_is_eps_low_with_a_negative_advantage():
  """eps_low != eps_high, A < 0: ratios under 1 - eps_low are clipped there (not at 1 - eps_high)."""
  eps_low, eps_high = 0.2, 0.28
  ratios = jnp.array([[0.5, 0.75, 0.9]])
  f = lambda lp: grpo.clipped_surrogate(lp, jnp.zeros((1, 3)), jnp.array([-1.0]), eps_low,
                                        eps_high)
  lp = jnp.log(ratios)
  # min(r A, clip(r, 0.8, 1.28) A) with A = -1: the first two sit below 0.8.
  np.testing.assert_allclose(f(lp), [[-0.8, -0.8, -0.9]], rtol=1e-6)
  grad = jax.grad(lambda x: jnp.sum(f(x)))(lp)
  np.testing.assert_allclose(grad, [[0.0, 0.0, -0.9]], rtol=1e-6)  # clipped tokens: no gradient
  _, m = grpo.grpo_loss(lp, jnp.zeros((1, 3)), jnp.zeros((1, 3)), jnp.array([-1.0]),
                        jnp.ones((1, 3), bool), eps_low=eps_low, eps_high=eps_high)
  np.testing.assert_allclose(m["clip_frac"], 2 / 3, rtol=1e-6)


def test_grpo_loss_takes_no_gradient_through_old_or_reference_logprobs():
  """The contract holds even when a caller passes the live log-probs as old and reference."""
  logp = jnp.log(jnp.array([[0.3, 0.6], [0.2, 0.5]]))
  adv = jnp.array([1.0, -2.0])
  mask = jnp.array([[True, True], [True, False]])
  live = lambda lp: grpo.grpo_loss(lp, lp, lp, adv, mask, beta=0.1)[0]
  # At ratio 1 (and u = 1 for the KL) it is the policy gradient: -A / tokens of its seq / N.
  np.testing.assert_allclose(jax.grad(live)(logp), [[-0.25, -0.25], [1.0, 0.0]], rtol=1e-6)
  off = logp + jnp.array([[0.1, -0.2], [0.3, 0.0]])
  by_arg = jax.grad(lambda lp, old, ref: grpo.grpo_loss(lp, old, ref, adv, mask, beta=0.1)[0],
                    argnums=(1, 2))(logp, off, off)
  for g in by_arg:
    np.testing.assert_array_equal(g, jnp.zeros_like(g))


def test_metrics_average_real_tokens_and_clip_frac_counts_only_the_binding_side():
  """clip_frac counts r > 1 + eps_high with A > 0 and r < 1 - eps_low with A < 0; every
  metric averages over real tokens only, and a batch without any is 0, not NaN."""
  ratios = jnp.array([[1.5, 1.1, 0.5], [1.5, 1.1, 0.5]])
  adv = jnp.array([1.0, -1.0])
  mask = jnp.array([[True, True, True], [True, True, False]])
  _, m = grpo.grpo_loss(jnp.log(ratios), jnp.zeros((2, 3)), jnp.zeros((2, 3)), adv, mask)
  # Clipped: row 0 token 0 (1.5 > 1.2, A > 0). Row 1's 0.5 (< 0.8, A < 0) is padding.
  np.testing.assert_allclose(m["clip_frac"], 1 / 5, rtol=1e-6)
  np.testing.assert_allclose(m["ratio_mean"], (1.5 + 1.1 + 0.5 + 1.5 + 1.1) / 5, rtol=1e-6)
  one = jnp.array([[True, False, False], [False, False, False]])
  _, m = grpo.grpo_loss(jnp.log(ratios), jnp.zeros((2, 3)), jnp.log(ratios) + np.log(2.0), adv,
                        one, beta=0.1)
  np.testing.assert_allclose(m["ratio_mean"], 1.5, rtol=1e-6)  # one real token: its own ratio
  np.testing.assert_allclose(m["kl"], 1 - np.log(2), rtol=1e-5)  # u = 2 on it
  none = jnp.zeros((2, 3), bool)
  loss, m = grpo.grpo_loss(jnp.log(ratios), jnp.zeros((2, 3)), jnp.zeros((2, 3)), adv, none)
  for value in (loss, *m.values()):
    assert float(value) == 0.0


def test_a_sequence_without_real_tokens_adds_zero_to_the_sequence_mean():
  per_token = jnp.array([[1.0, 3.0], [5.0, 7.0]])
  mask = jnp.array([[True, True], [False, False]])
  np.testing.assert_allclose(grpo.aggregate(per_token, mask, "seq_mean_token_mean"), 2.0 / 2)
  np.testing.assert_allclose(grpo.aggregate(per_token, jnp.zeros((2, 2), bool), "token_mean"), 0.0)
