"""Tests for focal.sampling: cache parity with full recomputation (across decode buckets too),
top-k/top-p on hand-computed cases, inverse-CDF draws against softmax, greedy determinism, EOS
stopping and padding, left-padding invariance, groups sharing one prefill's cache, scanned and
per-layer decode steps alike, left_pad errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from focal.models import (ModelConfig, forward, init_model, positions_from_mask,
                          token_logprobs)
from focal import decode_plan, sampling
from focal.decode_plan import decode_buckets
from focal.sampling import (inverse_cdf_sample, left_pad, sample,
                            sampling_logits, top_k_filter, top_p_filter)

CFG = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  d_ff=48, qkv_bias=True, tie_embeddings=False, max_seq_len=32)
PAD, EOS = 0, 1
PROMPTS = [[5, 9, 2, 7, 31], [3, 8], [12, 4, 4, 20, 6, 17, 2]]


@pytest.fixture(scope="module")
def model():
  """Random model with O(1) parameters so next-token distributions are far from uniform."""
  graphdef, state = init_model(CFG, 0)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return graphdef, jax.tree.unflatten(treedef, leaves)


def _full_sequence(prompt_tokens, prompt_mask, out):
  """Concatenate prompts and generations into [N, P+L] tokens and mask."""
  return (jnp.concatenate([prompt_tokens, out.tokens], 1),
          jnp.concatenate([prompt_mask, out.mask], 1))


_token_logprobs = jax.jit(token_logprobs, static_argnums=0)
_forward = jax.jit(forward, static_argnums=0)


def _generated_logprobs(graphdef, state, prompt_tokens, prompt_mask, out, temperature=1.0):
  tokens, mask = _full_sequence(prompt_tokens, prompt_mask, out)
  lp = _token_logprobs(graphdef, state, tokens, mask, temperature=temperature)
  return lp[:, prompt_tokens.shape[1] - 1:]


def test_top_k_hand_computed():
  logits = jnp.array([[1.0, 3.0, 2.0, 0.5], [0.0, 0.0, 5.0, 0.0]])
  out = top_k_filter(logits, 2)
  np.testing.assert_array_equal(out[0], [-np.inf, 3.0, 2.0, -np.inf])
  np.testing.assert_array_equal(out[1], [0.0, 0.0, 5.0, 0.0])  # ties with the 2nd value stay
  np.testing.assert_array_equal(top_k_filter(logits, 0), logits)


def test_top_p_hand_computed():
  probs = jnp.array([0.1, 0.5, 0.3, 0.1])
  logits = jnp.log(probs)[None]
  # sorted: 0.5, 0.3, 0.1, 0.1 -> mass before each: 0, 0.5, 0.8, 0.9
  keep = lambda p: np.isfinite(np.asarray(top_p_filter(logits, p)[0]))
  np.testing.assert_array_equal(keep(0.5), [False, True, False, False])  # 0.5 alone reaches 0.5
  np.testing.assert_array_equal(keep(0.6), [False, True, True, False])
  np.testing.assert_array_equal(keep(0.85), [True, True, True, True])  # tie at 0.1 is kept
  np.testing.assert_array_equal(keep(0.01), [False, True, False, False])  # always the top token
  np.testing.assert_array_equal(keep(1.0), [True] * 4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=12), st.floats(0.05, 0.99))
def test_top_p_keeps_a_minimal_set_reaching_p(logit_list, p):
  logits = jnp.asarray(logit_list, jnp.float32)
  probs = np.asarray(jax.nn.softmax(logits))
  kept = np.isfinite(np.asarray(top_p_filter(logits, p)))
  assert probs[kept].sum() >= p - 1e-6 or kept.all()
  # Every kept token is at least as likely as every dropped one.
  if (~kept).any():
    assert probs[kept].min() >= probs[~kept].max()
  # Minimal: without the least likely kept value (and its ties) the mass falls short of p.
  smallest = probs[kept].min()
  assert probs[kept & (probs > smallest + 1e-7)].sum() < p + 1e-6


def test_sampling_logits_order_and_empirical_distribution():
  logits = jnp.log(jnp.array([0.4, 0.3, 0.2, 0.1]))
  # temperature 0.5 squares the probabilities: 16:9:4:1; top_k=3 drops the last; top_p=0.9
  # keeps 16/29 + 9/29 = 0.862 < 0.9, so the third (4/29) stays.
  filtered = sampling_logits(logits, 0.5, top_k=3, top_p=0.9)
  expected = np.array([16, 9, 4, 0]) / 29
  np.testing.assert_allclose(jax.nn.softmax(filtered), expected, atol=1e-6)
  draws = jax.random.categorical(jax.random.key(0), filtered, shape=(20000,))
  freq = np.bincount(np.asarray(draws), minlength=4) / 20000
  np.testing.assert_allclose(freq, expected, atol=0.015)
  # The defaults filter nothing: top_k=0 and top_p=1 leave the temperature-scaled logits.
  np.testing.assert_allclose(sampling_logits(logits, 0.5), logits / 0.5, rtol=1e-6)


def test_logprobs_match_full_recomputation(model):
  """Cached decoding reproduces the full-prefix forward pass, for both returned log-probs."""
  graphdef, state = model
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  out = sample(graphdef, state, tokens, mask, jax.random.key(3), max_new_tokens=8,
               temperature=0.7, top_k=20, top_p=0.95, eos_id=None, pad_id=PAD)
  assert out.mask.all()
  ref_t1 = _generated_logprobs(graphdef, state, jnp.asarray(tokens), jnp.asarray(mask), out)
  ref_t = _generated_logprobs(graphdef, state, jnp.asarray(tokens), jnp.asarray(mask), out, 0.7)
  np.testing.assert_allclose(out.logprobs_t1, ref_t1, atol=1e-5)
  np.testing.assert_allclose(out.logprobs, ref_t, atol=1e-5)


def test_greedy_is_deterministic_and_argmax(model):
  graphdef, state = model
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  a = sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=8, eos_id=None,
             pad_id=PAD, greedy=True)
  b = sample(graphdef, state, tokens, mask, jax.random.key(99), max_new_tokens=8, eos_id=None,
             pad_id=PAD, greedy=True)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  # Each greedy token is the argmax of the full-prefix logits: its log-prob is the row maximum.
  full, full_mask = _full_sequence(jnp.asarray(tokens), jnp.asarray(mask), a)
  logits, _ = _forward(graphdef, state, full, positions_from_mask(full_mask), full_mask)
  p = tokens.shape[1]
  np.testing.assert_array_equal(jnp.argmax(logits[:, p - 1:-1], -1), a.tokens)
  # Different random keys do change non-greedy samples.
  c = sample(graphdef, state, tokens, mask, jax.random.key(1), max_new_tokens=8, eos_id=None, pad_id=PAD)
  d = sample(graphdef, state, tokens, mask, jax.random.key(2), max_new_tokens=8, eos_id=None, pad_id=PAD)
  assert not np.array_equal(c.tokens, d.tokens)


def test_stops_at_eos_and_pads(model):
  graphdef, state = model
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  free = sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=8, eos_id=None,
                pad_id=PAD, greedy=True)
  eos = int(free.tokens[0, 2])  # treat a token the model emits in row 0 as the EOS id
  out = sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=8, eos_id=eos,
               pad_id=PAD, greedy=True)
  for row in range(len(PROMPTS)):
    hits = np.flatnonzero(np.asarray(free.tokens[row]) == eos)
    stop = hits[0] + 1 if hits.size else 8  # number of real tokens, EOS included
    np.testing.assert_array_equal(out.tokens[row, :stop], free.tokens[row, :stop])
    np.testing.assert_array_equal(out.mask[row], np.arange(8) < stop)
    assert (np.asarray(out.tokens[row, stop:]) == PAD).all()
    assert (np.asarray(out.logprobs[row, stop:]) == 0).all()
    np.testing.assert_allclose(out.logprobs_t1[row, :stop], free.logprobs_t1[row, :stop], atol=1e-6)
  assert out.mask[0, 2] and not out.mask[0, 3]


def test_all_rows_finishing_early_pads_the_rest(model):
  graphdef, state = model
  # Three copies of one prompt, so every row's first greedy token is the EOS: the loop exits
  # after one step and the remaining columns are padding.
  tokens, mask = left_pad([PROMPTS[0]] * 3, pad_id=PAD, width=7)
  free = sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=8, eos_id=None,
                pad_id=PAD, greedy=True)
  out = sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=8,
               eos_id=int(free.tokens[0, 0]), pad_id=PAD, greedy=True)
  np.testing.assert_array_equal(out.tokens, [[free.tokens[0, 0]] + [PAD] * 7] * 3)
  np.testing.assert_array_equal(out.mask, [[True] + [False] * 7] * 3)


def test_left_padding_is_invisible(model):
  graphdef, state = model
  narrow = left_pad(PROMPTS, pad_id=PAD)
  wide = left_pad(PROMPTS, pad_id=PAD, width=10)
  kw = dict(max_new_tokens=8, temperature=1.0, eos_id=None, pad_id=PAD)
  a = sample(graphdef, state, *narrow, jax.random.key(5), **kw)
  b = sample(graphdef, state, *wide, jax.random.key(5), **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_left_pad_layout_and_errors():
  tokens, mask = left_pad([[7, 8, 9], [4]], pad_id=PAD, width=4)
  np.testing.assert_array_equal(tokens, [[PAD, 7, 8, 9], [PAD, PAD, PAD, 4]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
  assert tokens.dtype == np.int32 and mask.dtype == bool
  with pytest.raises(ValueError, match="prompt 1 has 30 tokens.*max_new_tokens=8.*context of 32"):
    left_pad([[1], [2] * 30], pad_id=PAD, max_new_tokens=8, max_seq_len=32)
  left_pad([[1], [2] * 24], pad_id=PAD, max_new_tokens=8, max_seq_len=32)  # exactly fits
  with pytest.raises(ValueError, match="prompt 0 is empty"):
    left_pad([[]], pad_id=PAD)
  with pytest.raises(ValueError, match="padded width 2"):
    left_pad([[1, 2, 3]], pad_id=PAD, width=2)


def test_sample_argument_errors(model):
  graphdef, state = model
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  with pytest.raises(ValueError, match="temperature"):
    sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=2, temperature=0.0,
           eos_id=EOS, pad_id=PAD)
  with pytest.raises(ValueError, match="left-padded"):
    sample(graphdef, state, tokens, mask[:, ::-1], jax.random.key(0), max_new_tokens=2,
           eos_id=EOS, pad_id=PAD)
  with pytest.raises(ValueError, match="exceeds the model context of 32"):
    sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=30, eos_id=EOS,
           pad_id=PAD)
  kw = dict(eos_id=EOS, pad_id=PAD)
  with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
    sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=0, **kw)
  for top_p in (0.0, -0.5, 1.5):
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
      sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=2, top_p=top_p, **kw)
  with pytest.raises(ValueError, match="top_k must be >= 0"):
    sample(graphdef, state, tokens, mask, jax.random.key(0), max_new_tokens=2, top_k=-1, **kw)


def test_a_one_token_decode_is_the_first_token_of_a_longer_one(model):
  """max_new_tokens=1 is a prefill and one draw: the first column of the same draw made longer."""
  graphdef, state = model
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  uniforms = decode_plan.draw_uniforms(jax.random.key(3), 4, len(PROMPTS))
  kw = dict(eos_id=EOS, pad_id=PAD)
  one = sample(graphdef, state, tokens, mask, None, max_new_tokens=1, uniforms=uniforms[:1], **kw)
  four = sample(graphdef, state, tokens, mask, None, max_new_tokens=4, uniforms=uniforms, **kw)
  assert one.tokens.shape == (len(PROMPTS), 1)
  np.testing.assert_array_equal(one.tokens[:, 0], four.tokens[:, 0])
  np.testing.assert_allclose(one.logprobs[:, 0], four.logprobs[:, 0], atol=1e-5)


def test_bfloat16_sampling_tracks_recomputation(model):
  """bf16 compute (bf16 cache): log-probs agree with a bf16 full recomputation to bf16 precision."""
  _, state = model
  graphdef, _ = init_model(dataclasses.replace(CFG, dtype="bfloat16"), 0)
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  out = sample(graphdef, state, tokens, mask, jax.random.key(4), max_new_tokens=8, eos_id=None,
               pad_id=PAD)
  assert out.logprobs.dtype == jnp.float32
  ref = _generated_logprobs(graphdef, state, jnp.asarray(tokens), jnp.asarray(mask), out)
  np.testing.assert_allclose(out.logprobs_t1, ref, atol=5e-2)


def test_inverse_cdf_sample_follows_softmax_and_never_picks_excluded_tokens():
  logits = jnp.array([[0.0, -jnp.inf, 1.0, 2.0, -jnp.inf],
                      [-jnp.inf, 3.0, -jnp.inf, -jnp.inf, -jnp.inf]])
  n = 20000
  uniforms = jax.random.uniform(jax.random.key(0), (n,))
  rows = jnp.repeat(logits[:1], n, axis=0)
  draw = jax.jit(inverse_cdf_sample)
  draws = np.asarray(draw(rows, uniforms))
  expected = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
  freq = np.bincount(draws, minlength=5) / n
  assert freq[1] == 0 and freq[4] == 0
  np.testing.assert_allclose(freq[[0, 2, 3]], expected, atol=0.015)
  # The ends of [0, 1): the first token with mass, and the last one (never a trailing excluded
  # token, even at the largest uniform below 1).
  edge = jnp.array([0.0, np.nextafter(np.float32(1), np.float32(0))], jnp.float32)
  np.testing.assert_array_equal(draw(jnp.repeat(logits[:1], 2, 0), edge), [0, 3])
  np.testing.assert_array_equal(draw(jnp.repeat(logits[1:], 2, 0), edge), [1, 1])


def test_decode_buckets_double_up_to_the_cap():
  assert decode_buckets(32) == [32]
  assert decode_buckets(64) == [64]
  assert decode_buckets(65) == [64, 65]
  assert decode_buckets(300) == [64, 128, 256, 300]
  assert decode_buckets(8, first=2) == [2, 4, 8]


@pytest.mark.slow
@pytest.mark.parametrize("per_layer,share_prefix", [(True, False), (False, True), (True, True)])
def test_decoding_across_buckets_matches_full_recomputation(per_layer, share_prefix, monkeypatch):
  """70 new tokens cross the first bucket (64): the second bucket's steps attend over the first
  bucket's cache chunk and their own; for the per-layer (CPU) and scanned (TPU) decode alike,
  with the prompt's cache shared (TPU) or copied into the first chunk (CPU)."""
  monkeypatch.setattr(sampling, "per_layer_decode", lambda: per_layer)
  monkeypatch.setattr(sampling, "shared_prefix_decode", lambda: share_prefix)
  cfg = dataclasses.replace(CFG, max_seq_len=80)
  graphdef, state = init_model(cfg, 2)
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  out = sample(graphdef, state, tokens, mask, jax.random.key(7), max_new_tokens=70, eos_id=None,
               pad_id=PAD, group_size=2)
  assert out.mask.all()
  ref = _generated_logprobs(graphdef, state, jnp.repeat(jnp.asarray(tokens), 2, 0),
                            jnp.repeat(jnp.asarray(mask), 2, 0), out)
  np.testing.assert_allclose(out.logprobs_t1, ref, atol=1e-5)


def test_scanned_shared_decode_equals_per_layer_copied_decode(model, monkeypatch):
  """Decode steps scanning the stacked weights and caches over prompt prefixes shared by their
  group (as on TPU) sample what the per-layer steps over rows that start with a copy of their
  prompt's cache (CPU) sample; so do the two other combinations."""
  graphdef, state = model
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  kw = dict(max_new_tokens=6, temperature=0.9, eos_id=EOS, pad_id=PAD, group_size=2)
  cpu = sample(graphdef, state, tokens, mask, jax.random.key(11), **kw)
  for per_layer, shared in [(False, True), (True, True), (False, False)]:
    monkeypatch.setattr(sampling, "per_layer_decode", lambda: per_layer)
    monkeypatch.setattr(sampling, "shared_prefix_decode", lambda: shared)
    other = sample(graphdef, state, tokens, mask, jax.random.key(11), **kw)
    np.testing.assert_array_equal(other.tokens, cpu.tokens)
    np.testing.assert_allclose(other.logprobs, cpu.logprobs, atol=1e-5)


def test_group_size_samples_like_repeated_prompts(model):
  """G continuations from one prefill per prompt equal sampling the prompts repeated G times."""
  graphdef, state = model
  tokens, mask = left_pad(PROMPTS, pad_id=PAD)
  kw = dict(max_new_tokens=6, temperature=0.8, eos_id=EOS, pad_id=PAD)
  grouped = sample(graphdef, state, tokens, mask, jax.random.key(9), group_size=3, **kw)
  repeated = sample(graphdef, state, np.repeat(tokens, 3, 0), np.repeat(mask, 3, 0),
                    jax.random.key(9), **kw)
  assert grouped.tokens.shape == (9, 6)
  np.testing.assert_array_equal(grouped.tokens, repeated.tokens)
  np.testing.assert_array_equal(grouped.mask, repeated.mask)
  np.testing.assert_allclose(grouped.logprobs, repeated.logprobs, atol=1e-5)
  # The rows of a group differ (they are G draws, not one draw copied).
  assert len({tuple(r) for r in np.asarray(grouped.tokens[:3])}) > 1
  with pytest.raises(ValueError, match="group_size"):
    sample(graphdef, state, tokens, mask, jax.random.key(0), group_size=0, **kw)


def test_any_of_several_stop_ids_ends_a_row(model):
  """A chat model ends a turn on one of several ids (Qwen: <|im_end|> and <|endoftext|>)."""
  graphdef, params = model
  tokens, mask = left_pad([[1, 2, 3]] * 64, pad_id=0)
  free = sample(graphdef, params, tokens, mask, jax.random.key(1), max_new_tokens=12,
                eos_id=None, pad_id=0)
  free_tokens = np.asarray(free.tokens)
  first, second = int(free_tokens[0, 0]), int(free_tokens[1, 1])
  out = sample(graphdef, params, tokens, mask, jax.random.key(1), max_new_tokens=12,
               eos_id=(first, second), pad_id=0)
  ids, kept = np.asarray(out.tokens), np.asarray(out.mask)
  for row, row_mask, free_row in zip(ids, kept, free_tokens):
    hits = [i for i, t in enumerate(free_row) if t in (first, second)]
    length = hits[0] + 1 if hits else 12
    assert row_mask.sum() == length and row_mask[:length].all()
    np.testing.assert_array_equal(row[:length], free_row[:length])
