"""Tests for focal.models.transformer: shapes, padding invariance, causality, KV-cache parity,
RoPE/RMSNorm/GQA against hand computations, dtype handling, the stacked (scanned) layers against
an unrolled loop, rematerialisation and chunked log-probs against the plain computation."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from focal.models import (SCALES, KVCache, ModelConfig, abstract_model, forward, init_cache,
                          init_model, param_count, positions_from_mask, token_logprobs)
from focal.models.transformer import Block, RMSNorm, apply_rope, attend, grouped_response_logprobs

CFG = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  d_ff=48, qkv_bias=True, tie_embeddings=False, rope_theta=10000.0, max_seq_len=64)


def _randomised(cfg, seed=0):
  """A model whose every parameter (biases and norm scales included) is random and O(0.1-1), so
  that tests are sensitive to wiring mistakes that zero biases / unit scales would hide."""
  graphdef, state = init_model(cfg, seed)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return graphdef, jax.tree.unflatten(treedef, leaves)


@pytest.fixture(scope="module")
def model():
  return _randomised(CFG)


_fwd = jax.jit(forward, static_argnums=0)


def test_scales_param_counts():
  expected = {"tiny": 0.2e6, "small": 2e6, "base": 10e6}
  for name, cfg in SCALES.items():
    _, abstract = abstract_model(cfg)
    assert abs(param_count(abstract) / expected[name] - 1) < 0.05, name
    assert cfg.vocab_size == 260


def test_param_count_hand_computed():
  d, h, kv, hd, f, v = 32, 4, 2, 8, 48, 50
  attn = d * h * hd + 2 * d * kv * hd + h * hd * d + (h * hd + 2 * kv * hd)  # + qkv biases
  layer = attn + 3 * d * f + 2 * d
  expected = v * d + 2 * layer + d + d * v  # embed, layers, final norm, untied head
  assert param_count(abstract_model(CFG)[1]) == expected
  tied = dataclasses.replace(CFG, tie_embeddings=True, qkv_bias=False)
  assert param_count(abstract_model(tied)[1]) == expected - d * v - 2 * (h * hd + 2 * kv * hd)


def test_config_validation():
  with pytest.raises(ValueError, match="n_kv_heads"):
    dataclasses.replace(CFG, n_kv_heads=3)
  with pytest.raises(ValueError, match="dtype"):
    dataclasses.replace(CFG, dtype="float16")
  with pytest.raises(ValueError, match="even"):
    dataclasses.replace(CFG, head_dim=7)


def test_forward_shapes_and_dtypes(model):
  graphdef, state = model
  tokens = jnp.zeros((3, 7), jnp.int32)
  mask = jnp.ones((3, 7), bool)
  logits, cache = _fwd(graphdef, state, tokens, positions_from_mask(mask), mask)
  assert logits.shape == (3, 7, CFG.vocab_size) and logits.dtype == jnp.float32
  assert cache is None
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state))


def test_positions_from_mask():
  mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(positions_from_mask(mask), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])


def test_left_padding_is_invisible(model):
  graphdef, state = model
  prompt = jnp.array([5, 9, 2, 7, 31, 4], jnp.int32)
  ref, _ = _fwd(graphdef, state, prompt[None], jnp.arange(6)[None], jnp.ones((1, 6), bool))
  for pad in (1, 4):
    # Padding filled with arbitrary token ids: masked keys must not leak whatever they hold.
    tokens = jnp.concatenate([jnp.full((pad,), 13, jnp.int32), prompt])[None]
    mask = jnp.arange(pad + 6)[None] >= pad
    logits, _ = _fwd(graphdef, state, tokens, positions_from_mask(mask), mask)
    np.testing.assert_allclose(logits[0, pad:], ref[0], atol=1e-5)
    assert np.isfinite(np.asarray(logits)).all()


def test_causality(model):
  graphdef, state = model
  a = jnp.array([[1, 2, 3, 4, 5, 6]], jnp.int32)
  b = a.at[0, 4].set(40)
  mask = jnp.ones((1, 6), bool)
  pos = positions_from_mask(mask)
  la, _ = _fwd(graphdef, state, a, pos, mask)
  lb, _ = _fwd(graphdef, state, b, pos, mask)
  np.testing.assert_allclose(la[0, :4], lb[0, :4], atol=1e-6)
  assert np.abs(np.asarray(la[0, 4:] - lb[0, 4:])).max() > 1e-3


def test_cache_chunked_prefill_and_decode_match_full_forward(model):
  graphdef, state = model
  tokens = jnp.array([[0, 0, 3, 8, 1, 22, 9, 14, 6, 2],
                      [4, 17, 3, 8, 1, 22, 9, 14, 6, 2]], jnp.int32)
  mask = jnp.array([[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 10], bool)
  pos = positions_from_mask(mask)
  full, _ = _fwd(graphdef, state, tokens, pos, mask)
  cache = init_cache(CFG, 2, 12)  # more slots than tokens: unwritten slots must stay invisible
  chunks = [(0, 5), (5, 6), (6, 7), (7, 10)]
  for lo, hi in chunks:
    logits, cache = _fwd(graphdef, state, tokens[:, lo:hi], pos[:, lo:hi], mask[:, lo:hi],
                         cache, jnp.int32(lo))
    # Compare real positions only: padding queries see no keys and their output is arbitrary.
    real = mask[:, lo:hi, None]
    np.testing.assert_allclose(logits * real, full[:, lo:hi] * real, atol=1e-5)
  np.testing.assert_array_equal(cache.mask, jnp.pad(mask, ((0, 0), (0, 2))))


def test_cache_and_cache_index_go_together(model):
  graphdef, state = model
  tokens = jnp.zeros((1, 2), jnp.int32)
  mask = jnp.ones((1, 2), bool)
  with pytest.raises(ValueError, match="together"):
    forward(graphdef, state, tokens, positions_from_mask(mask), mask, init_cache(CFG, 1, 4))


def test_token_logprobs_matches_log_softmax_and_is_differentiable(model):
  graphdef, state = model
  tokens = jnp.array([[0, 3, 8, 1, 22], [4, 17, 3, 8, 1]], jnp.int32)
  mask = jnp.array([[0, 1, 1, 1, 1], [1] * 5], bool)
  lp = token_logprobs(graphdef, state, tokens, mask)
  logits, _ = forward(graphdef, state, tokens, positions_from_mask(mask), mask)
  ref = jax.nn.log_softmax(np.asarray(logits[:, :-1]) / 0.7, -1)
  lp_t = token_logprobs(graphdef, state, tokens, mask, temperature=0.7)
  assert lp.shape == (2, 4)
  for b in range(2):
    for t in range(4):
      np.testing.assert_allclose(lp[b, t], jax.nn.log_softmax(logits[b, t])[tokens[b, t + 1]],
                                 atol=1e-5)
      np.testing.assert_allclose(lp_t[b, t], ref[b, t, tokens[b, t + 1]], atol=1e-5)

  def loss(s):
    return -(token_logprobs(graphdef, s, tokens, mask) * mask[:, 1:]).sum()
  grads = jax.jit(jax.grad(loss))(state)
  norms = [float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and max(norms) > 0


def test_bfloat16_compute_close_to_float32(model):
  graphdef, state = model
  bf_graphdef, _ = init_model(dataclasses.replace(CFG, dtype="bfloat16"), 0)
  tokens = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8]], jnp.int32)
  mask = jnp.ones_like(tokens, bool)
  pos = positions_from_mask(mask)
  ref, _ = _fwd(graphdef, state, tokens, pos, mask)
  out, _ = _fwd(bf_graphdef, state, tokens, pos, mask)  # same float32 params, bf16 compute
  assert out.dtype == jnp.float32
  err = np.abs(np.asarray(out - ref)).max()
  assert 0 < err < 0.1 * np.abs(np.asarray(ref)).max()


def test_rmsnorm_hand_computed():
  norm = RMSNorm(2, eps=0.0)
  norm.scale[...] = jnp.array([1.0, 2.0])
  # rms of (3, 4) is sqrt(12.5)
  np.testing.assert_allclose(norm(jnp.array([3.0, 4.0])), np.array([3, 8]) / np.sqrt(12.5), rtol=1e-6)


def test_rope_position_zero_is_identity_and_scores_depend_on_offset_only():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
  np.testing.assert_allclose(apply_rope(q, jnp.zeros((1, 1), jnp.int32), 100.0), q, atol=1e-7)

  def score(pq, pk):
    rq = apply_rope(q, jnp.array([[pq]]), 100.0)
    rk = apply_rope(k, jnp.array([[pk]]), 100.0)
    return float((rq * rk).sum())
  np.testing.assert_allclose(score(5, 2), score(13, 10), rtol=1e-5)
  assert abs(score(5, 2) - score(5, 4)) > 1e-3
  # Hand check of the rotate-half layout: pair (x_i, x_{i+D/2}) rotates by angle pos * theta^(-2i/D).
  x = jnp.zeros((1, 1, 1, 4)).at[..., 1].set(1.0)  # the i=1 pair, angle = 3 * 100^(-1/2) = 0.3
  out = apply_rope(x, jnp.array([[3]]), 100.0)
  np.testing.assert_allclose(out[0, 0, 0], [0, np.cos(0.3), 0, np.sin(0.3)], atol=1e-6)


def test_gqa_equals_multi_head_attention_with_repeated_kv():
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.normal(size=(2, 3, 4, 8)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(2, 5, 2, 8)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(2, 5, 2, 8)), jnp.float32)
  valid = jnp.asarray(rng.random((2, 3, 5)) > 0.3).at[:, :, 0].set(True)
  out = attend(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), valid)  # cache layout
  # query head h uses kv head h // 2
  k_rep, v_rep = jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2)
  scores = np.einsum("bthd,bshd->bhts", q, k_rep) / np.sqrt(8)
  scores = np.where(np.asarray(valid)[:, None], scores, -np.inf)
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose(out, np.einsum("bhts,bshd->bthd", probs, v_rep), atol=1e-5)


def test_llama3_rope_frequencies_hand_computed():
  """theta=1e4, head_dim 8: frequencies 1, 0.1, 0.01, 0.001 (wavelengths 2pi/f); with L=64,
  low=1, high=4 the first (6.3 < 16) is kept, the second (62.8) interpolated with
  s = (64/62.83 - 1) / 3, the last two (> 64) divided by the factor 8."""
  from focal.models.transformer import RopeScaling, rope_frequencies
  plain = np.asarray(rope_frequencies(8, 1e4))
  np.testing.assert_allclose(plain, [1, 0.1, 0.01, 0.001], rtol=1e-6)
  scaled = np.asarray(rope_frequencies(8, 1e4, RopeScaling(8.0, 1.0, 4.0, 64)))
  s = (64 / (2 * np.pi / 0.1) - 1) / 3
  np.testing.assert_allclose(scaled, [1, (1 - s) * 0.1 / 8 + s * 0.1, 0.01 / 8, 0.001 / 8],
                             rtol=1e-5)
  with pytest.raises(ValueError, match="low_freq_factor < high_freq_factor"):
    RopeScaling(8.0, 4.0, 1.0, 64)


def test_qk_norm_and_bfloat16_params():
  cfg = dataclasses.replace(CFG, qk_norm=True, qkv_bias=False, param_dtype="bfloat16")
  _, f32 = init_model(dataclasses.replace(cfg, param_dtype="float32"), 0)
  graphdef, bf16 = init_model(cfg, 0)
  assert {x.dtype for x in jax.tree.leaves(bf16)} == {jnp.dtype(jnp.bfloat16)}
  # Drawn in float32 and rounded, so the bfloat16 model is the float32 one up to rounding.
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a.astype(jnp.bfloat16), b), f32, bf16)
  assert bf16["layers"]["attn"]["q_norm"]["scale"].shape == (cfg.n_layers, cfg.head_dim)
  tokens = jnp.arange(6)[None] % cfg.vocab_size
  logits, _ = forward(graphdef, bf16, tokens, jnp.arange(6)[None], jnp.ones_like(tokens, bool))
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
  with pytest.raises(ValueError, match="param_dtype must be one of"):
    dataclasses.replace(cfg, param_dtype="float16")


def _groups(seed=0, b=2, g=3, p=5, length=6):
  """Left-padded prompts [B, P] and G responses each [B*G, L], some ending early."""
  rng = np.random.default_rng(seed)
  prompts = np.asarray(rng.integers(0, 50, (b, p)), np.int32)
  prompt_mask = np.ones((b, p), bool)
  prompt_mask[0, :2] = False  # prompt 0 is 3 tokens, left-padded
  responses = np.asarray(rng.integers(0, 50, (b * g, length)), np.int32)
  lengths = rng.integers(1, length + 1, b * g)
  response_mask = np.arange(length)[None] < lengths[:, None]
  return tuple(map(jnp.asarray, (prompts, prompt_mask, responses, response_mask))) + (g,)


def _full_logprobs(graphdef, state, prompts, prompt_mask, responses, response_mask, g, *,
                   temperature=1.0):
  tokens = jnp.concatenate([jnp.repeat(prompts, g, 0), responses], 1)
  mask = jnp.concatenate([jnp.repeat(prompt_mask, g, 0), response_mask], 1)
  return token_logprobs(graphdef, state, tokens, mask,
                        temperature=temperature)[:, prompts.shape[1] - 1:]


def test_grouped_response_logprobs_equal_the_full_forward(model):
  """One prompt pass per group gives every response's log-probs."""
  graphdef, state = model
  args = _groups()
  mask = args[3]
  grouped = jax.jit(grouped_response_logprobs, static_argnums=(0, 6))(graphdef, state, *args)
  full = jax.jit(_full_logprobs, static_argnums=(0, 6))(graphdef, state, *args)
  np.testing.assert_allclose(grouped * mask, full * mask, atol=1e-5)
  with pytest.raises(ValueError, match="5 responses for 2 prompts x group_size 3"):
    grouped_response_logprobs(graphdef, state, *args[:2], args[2][:5], args[3][:5], 3)


@pytest.mark.slow
def test_grouped_response_logprobs_gradient_equals_the_full_forward(model):
  """The gradient flows through the repeated prompt cache like through G prompt copies."""
  graphdef, state = model
  args = _groups(seed=1)
  mask = args[3]
  loss = lambda fn: lambda st: jnp.sum(fn(graphdef, st, *args) * mask)
  g_grouped = jax.jit(jax.grad(loss(grouped_response_logprobs)))(state)
  g_full = jax.jit(jax.grad(loss(_full_logprobs)))(state)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4),
               g_grouped, g_full)


def test_layers_are_stacked_and_initialised_like_a_layer_list():
  """Layer parameters carry a leading [n_layers] axis, drawn as if the layers were built one
  after the other (embedding, layer 0, layer 1, ..., head): a seed gives the same model as
  before the layers were stacked."""
  from flax import nnx
  _, state = init_model(CFG, 7)
  assert state["layers"]["attn"]["q_proj"]["kernel"].shape == (2, 32, 32)
  assert state["layers"]["mlp_norm"]["scale"].shape == (2, 32)
  rngs = nnx.Rngs(params=7)
  rngs.params()  # the embedding's draw
  blocks = [nnx.split(Block(CFG, rngs))[1] for _ in range(CFG.n_layers)]
  for i, block in enumerate(blocks):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[i], b), state["layers"], block)


def _unrolled_forward(graphdef, state, tokens, mask):
  """The model's forward as a Python loop over its layers, one Block at a time: the program
  before the layers were scanned."""
  from flax import nnx
  model = nnx.merge(graphdef, state)
  block_def, stacked = nnx.split(model.layers)
  x = jnp.take(model.embed[...], tokens, axis=0)
  for i in range(CFG.n_layers):
    block = nnx.merge(block_def, jax.tree.map(lambda p: p[i], stacked))
    x, _ = block(x, positions_from_mask(mask), mask)
  return model.logits(model.final_norm(x))


def test_scanned_layers_equal_an_unrolled_loop(model):
  graphdef, state = model
  tokens = jnp.array([[0, 3, 8, 1, 22, 9], [4, 17, 3, 8, 1, 2]], jnp.int32)
  mask = jnp.array([[0, 1, 1, 1, 1, 1], [1] * 6], bool)
  scanned, _ = _fwd(graphdef, state, tokens, positions_from_mask(mask), mask)
  unrolled = jax.jit(_unrolled_forward, static_argnums=0)(graphdef, state, tokens, mask)
  np.testing.assert_allclose(scanned, unrolled, atol=1e-6)


def test_per_layer_buffers_run_the_same_steps(model):
  """`hidden(layers=...)` (per-layer weights and caches, the CPU decode path) equals the scan."""
  from flax import nnx
  graphdef, state = model
  tokens = jnp.array([[0, 0, 3, 8, 1, 22], [4, 17, 3, 8, 1, 2]], jnp.int32)
  mask = jnp.array([[0, 0, 1, 1, 1, 1], [1] * 6], bool)
  pos = positions_from_mask(mask)

  def run(per_layer):
    m = nnx.merge(graphdef, state)
    h, prefix = m.hidden(tokens[:, :4], pos[:, :4], mask[:, :4], keep_kv=True)
    cache = init_cache(CFG, 2, 3, per_layer=per_layer)
    ctx = KVCache(*prefix, mask[:, :4])
    layers = None
    if per_layer:
      layers, ctx = m.unstack_layers(), KVCache(tuple(ctx.k), tuple(ctx.v), ctx.mask)
    out = []
    for i in (4, 5):
      h, cache = m.hidden(tokens[:, i:i + 1], pos[:, i:i + 1], mask[:, i:i + 1], context=(ctx,),
                          cache=cache, cache_index=jnp.int32(i - 4), layers=layers)
      out.append(m.logits(h))
    return jnp.concatenate(out, 1)

  full, _ = _fwd(graphdef, state, tokens, pos, mask)
  for per_layer in (False, True):
    np.testing.assert_allclose(jax.jit(run, static_argnums=0)(per_layer), full[:, 4:], atol=1e-5)


def _learn_grads(cfg, state, args):
  graphdef, _ = init_model(cfg, 0)

  def loss(st):
    lp, ent = grouped_response_logprobs(graphdef, st, *args, with_entropy=True)
    return jnp.sum(lp * args[3]) + jnp.sum(ent * args[3]) * 0.1, (lp, ent)

  return jax.jit(jax.value_and_grad(loss, has_aux=True))(state)


@pytest.fixture(scope="module")
def plain_learn_step(model):
  args = _groups(seed=2)
  return args, _learn_grads(CFG, model[1], args)


def _check_learn_step(model, plain_learn_step, change):
  args, ((ref_loss, (ref_lp, ref_ent)), ref) = plain_learn_step
  (loss, (lp, ent)), grads = _learn_grads(dataclasses.replace(CFG, **change), model[1], args)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  np.testing.assert_allclose(lp, ref_lp, atol=1e-5)
  np.testing.assert_allclose(ent, ref_ent, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grads, ref)


def test_remat_and_chunked_logprobs_equal_the_plain_learn_step(model, plain_learn_step):
  """Rematerialised layers and log-probs in chunks of positions (36 positions in chunks of 5:
  a padded last chunk) compute the same values and gradients as keeping every activation and
  every logit."""
  _check_learn_step(model, plain_learn_step, dict(remat="block", logits_chunk=5))


@pytest.mark.slow
@pytest.mark.parametrize("change", [dict(remat="dots"), dict(remat="block"),
                                    dict(logits_chunk=12)])
def test_each_learn_step_option_equals_the_plain_one(model, plain_learn_step, change):
  _check_learn_step(model, plain_learn_step, change)


def test_logits_chunk_setting():
  assert dataclasses.replace(CFG, logits_chunk=64).logits_rows == 64
  assert CFG.logits_rows == 2 ** 26 // 50 // 128 * 128          # about 2^26 logits per chunk
  assert dataclasses.replace(CFG, vocab_size=151936).logits_rows == 384
  with pytest.raises(ValueError, match="remat must be one of"):
    dataclasses.replace(CFG, remat="all")
  with pytest.raises(ValueError, match="attention must be one of"):
    dataclasses.replace(CFG, attention="flash")


def test_temperature_scales_grouped_logprobs(model):
  graphdef, state = model
  args = _groups(seed=3)
  t = jax.jit(lambda st: grouped_response_logprobs(graphdef, st, *args, temperature=0.7))(state)
  full = jax.jit(lambda st: _full_logprobs(graphdef, st, *args, temperature=0.7))(state)
  mask = args[3]
  np.testing.assert_allclose(t * mask, full * mask, atol=1e-5)
  plain = jax.jit(lambda st: grouped_response_logprobs(graphdef, st, *args))(state)
  assert np.abs(np.asarray((t - plain) * mask)).max() > 1e-2


def test_cache_write_and_per_layer_layout():
  cache = init_cache(CFG, 2, 3)
  assert cache.k.shape == (CFG.n_layers, 2, CFG.n_kv_heads, 3, CFG.head_dim)
  assert cache.mask.shape == (2, 3) and not cache.mask.any()
  per_layer = init_cache(CFG, 2, 3, per_layer=True)
  assert len(per_layer.k) == CFG.n_layers and per_layer.v[1].shape == cache.k.shape[1:]


@pytest.mark.slow
def test_splash_attention_learn_step_equals_xla(model):
  """attention='splash' (the Pallas TPU kernel, interpreted on CPU) scores responses as the XLA
  path does: the prompt pass and the response pass over the shared prefix."""
  _, state = model
  args = _groups(seed=4)
  lp = {}
  for attention in ("xla", "splash"):
    graphdef, _ = init_model(dataclasses.replace(CFG, attention=attention), 0)
    lp[attention] = jax.jit(lambda st: grouped_response_logprobs(graphdef, st, *args))(state)
  mask = args[3]
  np.testing.assert_allclose(lp["splash"] * mask, lp["xla"] * mask, atol=1e-5)
