"""Tests for focal.models.attention: several key segments (a prefix shared by a group of query
rows, a cache, the queries' own keys) against one softmax over the concatenated keys computed
independently in numpy, gradients included; the splash kernel (Pallas interpreter on CPU)
against the XLA path."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from focal.models.attention import (Segment, attend, attend_splash, attend_xla, segment_valid,
                                    splash_layout)

B, G, T, H, HKV, D = 2, 3, 4, 4, 2, 8
N = B * G


def _inputs(seed=0, p=5, s=6):
  rng = np.random.default_rng(seed)
  q = jnp.asarray(rng.normal(size=(N, T, H, D)), jnp.float32)
  prefix = Segment(jnp.asarray(rng.normal(size=(B, HKV, p, D)), jnp.float32),
                   jnp.asarray(rng.normal(size=(B, HKV, p, D)), jnp.float32),
                   jnp.asarray(rng.random((B, p)) > 0.3).at[:, -1].set(True))
  cache = Segment(jnp.asarray(rng.normal(size=(N, HKV, s, D)), jnp.float32),
                  jnp.asarray(rng.normal(size=(N, HKV, s, D)), jnp.float32),
                  jnp.asarray(rng.random((N, s)) > 0.2), offset=2)
  own = Segment(jnp.asarray(rng.normal(size=(N, HKV, T, D)), jnp.float32),
                jnp.asarray(rng.normal(size=(N, HKV, T, D)), jnp.float32),
                jnp.asarray(rng.random((N, T)) > 0.2).at[:, 0].set(True), offset=0)
  return q, prefix, cache, own


def _reference(q, segments):
  """softmax over the concatenated keys of every segment, per query row, in numpy float64."""
  q = np.asarray(q, np.float64)
  ks, vs, valid = [], [], []
  for seg in segments:
    rows = N // seg.k.shape[0]
    ks.append(np.repeat(np.asarray(seg.k, np.float64), rows, 0))
    vs.append(np.repeat(np.asarray(seg.v, np.float64), rows, 0))
    ok = np.asarray(segment_valid(seg, T))
    valid.append(np.broadcast_to(np.repeat(ok, rows, 0), (N, T, ok.shape[-1])))
  k, v, ok = (np.concatenate(x, axis=a) for x, a in ((ks, 2), (vs, 2), (valid, 2)))
  k, v = np.repeat(k, H // HKV, 1), np.repeat(v, H // HKV, 1)  # query head h: kv head h // 2
  scores = np.einsum("nthd,nhsd->nhts", q, k) / np.sqrt(D)
  scores = np.where(ok[:, None], scores, -np.inf)
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.einsum("nhts,nhsd->nthd", probs, v)


def test_segments_merge_into_one_softmax():
  q, prefix, cache, own = _inputs()
  for segments in ((own,), (prefix, own), (prefix, cache), (prefix, cache, own)):
    out = jax.jit(attend_xla)(q, segments)
    np.testing.assert_allclose(out, _reference(q, segments), atol=2e-6)


def test_segment_visibility_hand_computed():
  seg = Segment(jnp.zeros((1, 1, 4, 2)), jnp.zeros((1, 1, 4, 2)),
                jnp.array([[True, False, True, True]]), offset=1)
  # Query 0 sits at slot 1, query 1 at slot 2: keys up to their own slot, real ones only.
  np.testing.assert_array_equal(segment_valid(seg, 2)[0], [[1, 0, 0, 0], [1, 0, 1, 0]])
  whole = seg._replace(offset=None)
  np.testing.assert_array_equal(segment_valid(whole, 2)[0], [[1, 0, 1, 1]])
  with pytest.raises(ValueError, match="visible whole"):
    attend_xla(jnp.zeros((2, 1, 2, 2)), (seg, whole._replace(k=jnp.zeros((1, 1, 4, 2)))))


def test_merged_gradients_equal_the_concatenated_softmax():
  """The gradient through the merged partial sums is that of one softmax (`attend`) over the
  prefix repeated for its rows and concatenated with the queries' own keys."""
  q, prefix, _, own = _inputs(seed=1)

  def single(q, pk, ok):
    k = jnp.concatenate([jnp.repeat(pk, G, 0), ok], 2)
    v = jnp.concatenate([jnp.repeat(prefix.v, G, 0), own.v], 2)
    seen = jnp.broadcast_to(jnp.repeat(prefix.mask, G, 0)[:, None], (N, T, prefix.mask.shape[1]))
    return jnp.sum(jnp.sin(attend(q, k, v, jnp.concatenate([seen, segment_valid(own, T)], 2))))

  def merged(q, pk, ok):
    return jnp.sum(jnp.sin(attend_xla(q, (prefix._replace(k=pk), own._replace(k=ok)))))

  args = (q, prefix.k, own.k)
  np.testing.assert_allclose(merged(*args), single(*args), rtol=1e-6)
  for a, b in zip(jax.grad(merged, (0, 1, 2))(*args), jax.grad(single, (0, 1, 2))(*args)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_splash_layout_puts_the_queries_last_on_whole_blocks():
  q, prefix, _, own = _inputs()
  k, v, kv_ids, q_ids, t_pad = splash_layout((prefix, own), own.mask)
  assert t_pad == 128 and k.shape == (N, HKV, 256, D) and kv_ids.shape == (N, 256)
  # Prefix keys end where the queries' own begin; their padding is id 0 at the front.
  np.testing.assert_array_equal(kv_ids[:, 128 - 5:128], np.repeat(prefix.mask, G, 0))
  assert not np.asarray(kv_ids[:, :128 - 5]).any()
  np.testing.assert_array_equal(kv_ids[:, 128:128 + T], own.mask)
  assert (np.asarray(kv_ids[:, 128 + T:]) == 2).all() and (np.asarray(q_ids[:, T:]) == 2).all()
  np.testing.assert_array_equal(k[:, :, 128:128 + T], own.k)


@pytest.mark.parametrize("with_prefix", [False, True])
def test_splash_equals_xla(with_prefix):
  """The splash kernel (interpreted on CPU) gives the XLA path's outputs at real queries."""
  q, prefix, _, own = _inputs(seed=2)
  segments = (prefix, own) if with_prefix else (own,)
  out = jax.jit(lambda q: attend_splash(q, segments, own.mask, interpret=True))(q)
  real = np.asarray(own.mask)[:, :, None, None]
  np.testing.assert_allclose(out * real, attend_xla(q, segments) * real, atol=1e-5)


@pytest.mark.slow
def test_splash_gradients_equal_xla():
  q, prefix, _, own = _inputs(seed=3)
  real = own.mask[:, :, None, None]

  def loss(fn):
    return lambda q, pk, ok: jnp.sum(jnp.sin(fn(q, (prefix._replace(k=pk), own._replace(k=ok))))
                                     * real)

  splash = loss(lambda q, segs: attend_splash(q, segs, own.mask, interpret=True))
  args = (q, prefix.k, own.k)
  got = jax.jit(jax.grad(splash, (0, 1, 2)))(*args)
  want = jax.grad(loss(attend_xla), (0, 1, 2))(*args)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, atol=1e-5)
