"""Decoder-only transformer (Llama 3.x / Qwen2 / Qwen3 architectures) in Flax NNX.

Architecture: token embedding -> n_layers x [RMSNorm -> grouped-query attention with RoPE ->
residual -> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> LM head (tied to the embedding or
separate). Qwen2 differs from Llama by a bias on the q/k/v projections (`qkv_bias=True`); Qwen3
instead RMS-normalises each query and key head before RoPE (`qk_norm=True`); Llama 3.1+ rescales
the RoPE frequencies (`rope_scaling=RopeScaling(...)`, HF rope_type 'llama3').

The layers are one `Block` whose parameters have a leading [n_layers] axis
('layers/attn/q_proj/kernel' is [n_layers, d_model, q_dim]), run by `jax.lax.scan`: a program
holds one layer's code whatever the depth, so compile time does not grow with it, and
`config.remat` rematerialises each layer in the backward pass (see ModelConfig).

Parameters are float32 unless `config.param_dtype='bfloat16'`; `config.dtype` sets the compute
dtype of activations and matmuls. Logits are returned in float32 (the LM head accumulates in
float32) because the GRPO ratio is a difference of log-probs and bfloat16 logits would put ~1e-2
noise into it. `token_logprobs` and `grouped_response_logprobs` never form the [N, L, V] logits:
they send final hidden states through the head in chunks (focal.models.logprobs).

Padding convention: rows are left-padded; `attention_mask` is True on real tokens and `positions`
count real tokens only (0 at a row's first real token, see `positions_from_mask`). Padded keys are
masked out, so a prompt's logits do not depend on the padding around it.

Caches (focal.models.kv_cache): `forward(..., cache, cache_index)` writes the call's tokens into
the cache and attends over it; `Transformer.hidden(..., context=...)` also attends over caches
seen whole, such as a prompt's cache shared by the G rows of its group.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from focal.models.attention import Segment, attend, target_platform
from focal.models.config import ModelConfig, RopeScaling
from focal.models.kv_cache import KVCache, init_cache, positions_from_mask
from focal.models.layers import (MLP, Attention, Block, LayerCache, Linear, RMSNorm, apply_rope,
                                 dot_2d, normal_param, rope_frequencies)
from focal.models.logprobs import entropy_of, head_logprobs

__all__ = ["Attention", "Block", "KVCache", "Linear", "MLP", "ModelConfig", "RMSNorm",
           "RopeScaling", "Transformer", "abstract_model", "apply_rope", "attend", "entropy_of",
           "forward", "grouped_response_logprobs", "init_cache", "init_model",
           "positions_from_mask", "rope_frequencies", "token_logprobs"]

_REMAT_POLICIES = {"block": None,
                   "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}


def stack_layers(blocks: list[Block]) -> Block:
  """One Block whose every parameter is the blocks' parameters stacked on a leading axis.

  The blocks are built (and their parameters drawn) one after the other, so a model's random
  initialisation is the same as that of an unstacked layer list.
  """
  graphdef, _ = nnx.split(blocks[0])
  states = [nnx.split(block)[1] for block in blocks]
  return nnx.merge(graphdef, jax.tree.map(lambda *xs: jnp.stack(xs), *states))


def _unrolled(layer, x, kv, layers, context_kv):
  """`layer` applied to each of `layers` in turn; kv and context_kv hold per-layer tuples."""
  ks, vs = (None, None) if kv is None else (list(kv[0]), list(kv[1]))
  new = []
  for i, layer_params in enumerate(layers):
    (x, kv_i), new_i = layer((x, None if kv is None else (ks[i], vs[i])),
                             (layer_params, None, tuple((k[i], v[i]) for k, v in context_kv)))
    if kv is not None:
      ks[i], vs[i] = kv_i
    new.append(new_i)
  return x, (None if kv is None else (tuple(ks), tuple(vs))), new


def _remat(fn, mode: str):
  if mode == "none":
    return fn
  return jax.checkpoint(fn, policy=_REMAT_POLICIES[mode], prevent_cse=False)


# A rolled layer loop costs XLA on CPU a while-loop's bookkeeping per layer and fusion across
# layers: at the peers' small shapes (2-8 layers) that made a train step 2x slower than the
# unrolled program (benchmarks/vs_peers.py). Unrolled, compile time grows with depth, which is
# what the scan is for; so CPU unrolls shallow models only, and TPU keeps the rolled loop.
CPU_UNROLL_MAX_LAYERS = 8


def layer_unroll(n_layers: int) -> int:
  """lax.scan's `unroll` for the layer loop: every layer on CPU up to CPU_UNROLL_MAX_LAYERS
  layers, else 1 (a rolled loop whose compile time does not grow with depth)."""
  return n_layers if target_platform() == "cpu" and n_layers <= CPU_UNROLL_MAX_LAYERS else 1


class Transformer(nnx.Module):
  """Decoder-only LM. Call: (tokens, positions, attention_mask, cache, cache_index) -> (logits, cache)."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    pd = cfg.storage_dtype
    self.embed = normal_param(rngs, (cfg.vocab_size, cfg.d_model), pd)
    self.layers = stack_layers([Block(cfg, rngs) for _ in range(cfg.n_layers)])
    self.final_norm = RMSNorm(cfg.d_model, cfg.rms_eps, pd)
    self.lm_head = (None if cfg.tie_embeddings
                    else normal_param(rngs, (cfg.d_model, cfg.vocab_size), pd))

  def head(self) -> jax.Array:
    """The LM head [D, V] in the compute dtype."""
    head = self.embed[...].T if self.lm_head is None else self.lm_head[...]
    return head.astype(self.cfg.compute_dtype)

  def logits(self, h: jax.Array) -> jax.Array:
    """Final hidden states [..., D] -> float32 logits [..., V]."""
    return dot_2d(h, self.head(), preferred_element_type=jnp.float32)

  def hidden(self, tokens: jax.Array, positions: jax.Array, attention_mask: jax.Array, *,
             context: tuple[KVCache, ...] = (), cache: KVCache | None = None, cache_index=None,
             keep_kv: bool = False, layers=None):
    """Final-norm hidden states of tokens [N, T], and their keys and values.

    context: caches of earlier tokens that every token sees whole (where their mask is True):
      a prompt's prefix with B = N / G rows, each shared by its G query rows (prompt-major), or
      caches with N rows.
    cache: a cache with N rows that the tokens are written into at `cache_index` (a scalar);
      they attend over it causally by slot.
    layers: None scans the stacked layers. Or the layers' parameters as one state per layer
      (`unstack_layers`), with the caches' k and v tuples of per-layer arrays: the layers then
      run one after the other, each reading whole buffers (focal.sampling: on CPU, XLA copies
      the slice of a stacked array that a matmul reads, once per layer and step).
    Returns (h [N, T, D], kv): the updated cache when one is given; else with keep_kv the
    tokens' (k, v) [n_layers, N, Hkv, T, Dh]; else None.
    """
    cfg = self.cfg
    mask = attention_mask.astype(bool)
    x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.compute_dtype)
    graphdef, params = nnx.split(self.layers)
    masks = [c.mask.astype(bool) for c in context]
    view = None
    if cache is not None:
      key_mask = jax.lax.dynamic_update_slice(cache.mask, mask, (0, cache_index))
      view = LayerCache(cache.k, cache.v, key_mask, cache_index)

    def layer(carry, xs):
      x, kv = carry
      layer_params, i, context_kv = xs
      segments = tuple(Segment(k, v, m) for (k, v), m in zip(context_kv, masks))
      layer_cache = None if view is None else view._replace(k=kv[0], v=kv[1], layer=i)
      x, new_kv = nnx.merge(graphdef, layer_params)(x, positions, mask, segments, layer_cache)
      if view is not None:
        return (x, new_kv), None
      return (x, None), (new_kv if keep_kv else None)

    layer = _remat(layer, cfg.remat)
    kv = None if view is None else (cache.k, cache.v)
    context_kv = tuple((c.k, c.v) for c in context)
    if layers is None:
      (x, kv), new = jax.lax.scan(layer, (x, kv), (params, jnp.arange(cfg.n_layers), context_kv),
                                  unroll=layer_unroll(cfg.n_layers))
    else:  # the same steps, unrolled over per-layer buffers
      x, kv, new = _unrolled(layer, x, kv, layers, context_kv)
      new = tuple(zip(*new)) if keep_kv and view is None else None
    x = self.final_norm(x)
    if view is not None:
      return x, KVCache(kv[0], kv[1], key_mask)
    return x, new

  def unstack_layers(self) -> list[nnx.State]:
    """The stacked layers' parameters as one state per layer (copies)."""
    _, params = nnx.split(self.layers)
    return [jax.tree.map(lambda x, i=i: x[i], params) for i in range(self.cfg.n_layers)]

  def __call__(self, tokens: jax.Array, positions: jax.Array, attention_mask: jax.Array,
               cache: KVCache | None = None, cache_index=None):
    """Run the model.

    tokens, positions: [B, T] int32; attention_mask: [B, T] bool (True = real token).
    cache: optional KVCache with S slots; cache_index: scalar int, the slot of tokens[:, 0]
    (the tokens attend over the cache's real slots before it and are written from it on).
    Returns (logits [B, T, V] float32, the updated KVCache or None when no cache was given).
    """
    if (cache is None) != (cache_index is None):
      raise ValueError("cache and cache_index must be given together")
    h, new_cache = self.hidden(tokens, positions, attention_mask, cache=cache,
                               cache_index=cache_index)
    return self.logits(h), new_cache


def init_model(config: ModelConfig, rng: jax.Array | int) -> tuple[nnx.GraphDef, nnx.State]:
  """Randomly initialise a Transformer and split it into (graphdef, params state)."""
  rngs = nnx.Rngs(params=rng)
  return nnx.split(Transformer(config, rngs))


def abstract_model(config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, state of ShapeDtypeStructs) without allocating parameters."""
  return nnx.split(nnx.eval_shape(lambda: Transformer(config, nnx.Rngs(params=0))))


def forward(graphdef: nnx.GraphDef, state: nnx.State, tokens, positions, attention_mask,
            cache: KVCache | None = None, cache_index=None):
  """Pure functional call: same as `Transformer.__call__`, usable under jax.jit/grad on `state`.

  Jit with the graphdef static, e.g. `jax.jit(forward, static_argnums=0)`.
  """
  model = nnx.merge(graphdef, state)
  return model(tokens, positions, attention_mask, cache, cache_index)


def token_logprobs(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array,
                   attention_mask: jax.Array, positions: jax.Array | None = None, *,
                   temperature: float = 1.0, with_entropy: bool = False):
  """Log-probs of tokens[:, 1:] given their prefixes: [B, T] -> [B, T-1] float32.

  Computed as log_softmax(logits / temperature). temperature=1 gives the model's own
  distribution; pass the sampling temperature to match `SampleOutput.logprobs`.
  positions default to `positions_from_mask(attention_mask)`. Entries whose target token is
  padding are meaningless; mask them with attention_mask[:, 1:].
  with_entropy: also return the entropy [B, T-1] of each of those next-token distributions,
  from the same log-softmax (no second forward pass).
  """
  if positions is None:
    positions = positions_from_mask(attention_mask)
  model = nnx.merge(graphdef, state)
  h, _ = model.hidden(tokens, positions, attention_mask)
  return head_logprobs(h[:, :-1], model.head(), tokens[:, 1:], chunk=model.cfg.logits_rows,
                       temperature=temperature, with_entropy=with_entropy)


def grouped_response_logprobs(graphdef: nnx.GraphDef, state: nnx.State, prompt_tokens: jax.Array,
                              prompt_mask: jax.Array, response_tokens: jax.Array,
                              response_mask: jax.Array, group_size: int, *,
                              with_entropy: bool = False, temperature: float = 1.0):
  """Log-probs of G responses per prompt, running each prompt once: [N, L] float32.

  prompt_tokens, prompt_mask: [B, P], left-padded. response_tokens, response_mask: [N, L] with
  N = B * group_size, prompt-major (rows b*G .. b*G + G - 1 answer prompt b).
  Computed as log_softmax(logits / temperature) (pass the sampling temperature to score the
  distribution the rollouts were drawn from). Equals `token_logprobs` on the concatenated
  [N, P + L] sequences (the prompt's keys and values do not depend on what follows it), but the
  prompt goes through the model B times instead of N: the prompt pass keeps its keys and values
  once per prompt, the responses attend over them (shared by the group) and over themselves,
  and of the prompt's logits only the last position's are formed. Differentiable in `state`.
  Entries whose token is padding are meaningless; mask them with response_mask. with_entropy:
  also return the entropy [N, L] of the same distributions, from the same log-softmax.
  """
  model = nnx.merge(graphdef, state)
  b = prompt_tokens.shape[0]
  n, length = response_tokens.shape
  if n != b * group_size:
    raise ValueError(f"{n} responses for {b} prompts x group_size {group_size}")
  prompt_mask = prompt_mask.astype(bool)
  response_mask = response_mask.astype(bool)
  h_prompt, (k, v) = model.hidden(prompt_tokens, positions_from_mask(prompt_mask), prompt_mask,
                                  keep_kv=True)
  # Response token j is predicted at the position before it: the prompt's last position for
  # j = 0, else response position j - 1; the last response token predicts nothing and is not fed.
  h = jnp.repeat(h_prompt[:, -1:], group_size, axis=0)
  if length > 1:
    prompt_len = jnp.repeat(jnp.sum(prompt_mask, -1, dtype=jnp.int32), group_size)
    positions = prompt_len[:, None] + jnp.arange(length - 1, dtype=jnp.int32)
    rest, _ = model.hidden(response_tokens[:, :-1], positions, response_mask[:, :-1],
                           context=(KVCache(k, v, prompt_mask),))
    h = jnp.concatenate([h, rest], axis=1)
  return head_logprobs(h, model.head(), response_tokens, chunk=model.cfg.logits_rows,
                       temperature=temperature, with_entropy=with_entropy)
