"""Decoder-only transformer (Llama 3.x / Qwen2 / Qwen3 architectures) in Flax NNX.

Architecture: token embedding -> n_layers x [RMSNorm -> grouped-query attention with RoPE ->
residual -> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> LM head (tied to the embedding or
separate). Qwen2 differs from Llama by a bias on the q/k/v projections (`qkv_bias=True`); Qwen3
instead RMS-normalises each query and key head before RoPE (`qk_norm=True`); Llama 3.1+ rescales
the RoPE frequencies (`rope_scaling=RopeScaling(...)`, HF rope_type 'llama3').

Parameters are float32 unless `config.param_dtype='bfloat16'`; `config.dtype` sets the compute
dtype of activations and matmuls.
Logits are returned in float32 (the LM head accumulates in float32) because the GRPO ratio is a
difference of log-probs and bfloat16 logits would put ~1e-2 noise into it.

Padding convention: rows are left-padded; `attention_mask` is True on real tokens and `positions`
count real tokens only (0 at a row's first real token, see `positions_from_mask`). Padded keys are
masked out, so a prompt's logits do not depend on the padding around it.

KV cache: a `KVCache` holds per-layer key/value buffers of a fixed length S and a [B, S] mask of the
slots that hold real tokens. A call with `cache_index=i` writes its T tokens to slots [i, i+T) and
attends causally (by slot) over the valid slots, so prefill and one-token decode are the same code.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from focal.models.config import ModelConfig, RopeScaling
from focal.models.kv_cache import (KVCache, grow_cache, init_cache, positions_from_mask,
                                   repeat_cache, valid_keys)
from focal.models.layers import (MLP, Attention, Block, Linear, RMSNorm, apply_rope, attend,
                                 rope_frequencies)
from focal.models.layers import dot_2d, normal_param

__all__ = ["Attention", "Block", "KVCache", "Linear", "MLP", "ModelConfig", "RMSNorm",
           "RopeScaling", "Transformer", "abstract_model", "apply_rope", "attend", "entropy_of",
           "forward", "grouped_response_logprobs", "grow_cache", "init_cache", "init_model",
           "positions_from_mask", "repeat_cache", "rope_frequencies", "token_logprobs"]


class Transformer(nnx.Module):
  """Decoder-only LM. Call: (tokens, positions, attention_mask, cache, cache_index) -> (logits, cache)."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    pd = cfg.storage_dtype
    self.embed = normal_param(rngs, (cfg.vocab_size, cfg.d_model), pd)
    self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
    self.final_norm = RMSNorm(cfg.d_model, cfg.rms_eps, pd)
    self.lm_head = (None if cfg.tie_embeddings
                    else normal_param(rngs, (cfg.d_model, cfg.vocab_size), pd))

  def __call__(self, tokens: jax.Array, positions: jax.Array, attention_mask: jax.Array,
               cache: KVCache | None = None, cache_index=None):
    """Run the model.

    tokens, positions: [B, T] int32; attention_mask: [B, T] bool (True = real token).
    cache: optional KVCache with S slots; cache_index: scalar int, the slot of tokens[:, 0].
    Returns (logits [B, T, V] float32, the updated KVCache or None when no cache was given).
    """
    if (cache is None) != (cache_index is None):
      raise ValueError("cache and cache_index must be given together")
    dtype = self.cfg.compute_dtype
    attention_mask = attention_mask.astype(bool)
    valid, key_mask = valid_keys(attention_mask, cache, cache_index)
    x = jnp.take(self.embed[...], tokens, axis=0).astype(dtype)
    new_k, new_v = [], []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else (cache.k[i], cache.v[i])
      x, layer_new = layer(x, positions, valid, layer_cache, cache_index)
      if layer_new is not None:
        new_k.append(layer_new[0])
        new_v.append(layer_new[1])
    x = self.final_norm(x)
    head = self.embed[...].T if self.lm_head is None else self.lm_head[...]
    logits = dot_2d(x, head.astype(dtype), preferred_element_type=jnp.float32)
    new_cache = None if cache is None else KVCache(tuple(new_k), tuple(new_v), key_mask)
    return logits, new_cache


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
  logits, _ = forward(graphdef, state, tokens, positions, attention_mask)
  logp = jax.nn.log_softmax(logits[:, :-1] / temperature, axis=-1)
  chosen = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  return (chosen, entropy_of(logp)) if with_entropy else chosen


def entropy_of(logp: jax.Array) -> jax.Array:
  """Entropy -sum_v p_v log p_v (nats) of distributions given by their log-probs [..., V]."""
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)



def grouped_response_logprobs(graphdef: nnx.GraphDef, state: nnx.State, prompt_tokens: jax.Array,
                              prompt_mask: jax.Array, response_tokens: jax.Array,
                              response_mask: jax.Array, group_size: int, *,
                              temperature: float = 1.0, with_entropy: bool = False):
  """Log-probs of G responses per prompt under log_softmax(logits / temperature), running each
  prompt once: [N, L].

  prompt_tokens, prompt_mask: [B, P], left-padded. response_tokens, response_mask: [N, L] with
  N = B * group_size, prompt-major (rows b*G .. b*G + G - 1 answer prompt b).
  Equals `token_logprobs` on the concatenated [N, P + L] sequences (the prompt's keys and values
  do not depend on what follows it), but the prompt goes through the model B times instead of N:
  the prompt pass writes a KV cache that is repeated G times, and the responses attend over it.
  Differentiable in `state` (through the repeated cache too). Entries whose token is padding are
  meaningless; mask them with response_mask. with_entropy: also return the entropy [N, L] of
  the policy's distribution at each response position, from the same log-softmax.
  """
  model = nnx.merge(graphdef, state)
  b, p = prompt_tokens.shape
  n, length = response_tokens.shape
  if n != b * group_size:
    raise ValueError(f"{n} responses for {b} prompts x group_size {group_size}")
  prompt_mask = prompt_mask.astype(bool)
  response_mask = response_mask.astype(bool)
  cache = init_cache(model.cfg, b, p + length - 1)
  prompt_logits, cache = model(prompt_tokens, positions_from_mask(prompt_mask), prompt_mask,
                               cache, jnp.int32(0))
  cache = repeat_cache(cache, group_size)
  # Response token j is predicted at the slot before it: the prompt's last slot for j = 0, else
  # response slot j - 1; the last response token predicts nothing and is not fed.
  logits = jnp.repeat(prompt_logits[:, -1:], group_size, axis=0)
  if length > 1:
    prompt_len = jnp.repeat(jnp.sum(prompt_mask, -1, dtype=jnp.int32), group_size)
    positions = prompt_len[:, None] + jnp.arange(length - 1, dtype=jnp.int32)
    rest, _ = model(response_tokens[:, :-1], positions, response_mask[:, :-1], cache,
                    jnp.int32(p))
    logits = jnp.concatenate([logits, rest], axis=1)
  logp = jax.nn.log_softmax(logits / temperature, axis=-1)
  # A masked sum rather than a gather: its gradient is elementwise and fuses with the softmax's,
  # where a gather's is a scatter into a zeroed [N, L, V] buffer.
  chosen = jnp.arange(logp.shape[-1]) == response_tokens[..., None]
  chosen_logp = jnp.sum(jnp.where(chosen, logp, 0.0), axis=-1)
  return (chosen_logp, entropy_of(logp)) if with_entropy else chosen_logp
