"""Autoregressive sampling with a KV cache: prefill and decode inside one jitted function.

`sample` runs each prompt through the model once (prefill), keeping its keys and values as a
prefix cache that its G continuations share (one copy per prompt, not per rollout), and forming
only the last position's logits. It then decodes one token per step in `jax.lax.while_loop`s
whose carry holds a cache of the generated tokens, allocated once at its full length and
written in place. A step attends over the prompt's prefix, the generated slots so far and
itself, with one softmax (focal.models.attention). The decode runs in buckets
(`decode_buckets`): each bucket's loop reads only the first slots of the generated cache that its
steps can have filled, so a step's cost follows the filled part, not the length cap; nothing is
copied between buckets. The loops exit early once every row has emitted EOS. Tokens are drawn by inverse-CDF sampling
from one uniform per row and step, all drawn before the loop (`inverse_cdf_sample`).

Log-probs returned (see `SampleOutput`):
  * `logprobs`    = log softmax(logits / temperature)[token]: the policy at the sampling
                    temperature, WITHOUT the top-k/top-p truncation (truncation is a sampler
                    heuristic, not part of the policy). Equals
                    `token_logprobs(..., temperature=temperature)` on the same sequence.
  * `logprobs_t1` = log softmax(logits)[token]: the model's own distribution (temperature 1),
                    equal to `token_logprobs(...)` with the default temperature. Use this one for
                    the GRPO ratio when the loss recomputes log-probs at temperature 1.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from focal.decode_plan import (decode_buckets, draw_uniforms, per_layer_decode,
                               shared_prefix_decode, stop_array)
from focal.models.kv_cache import (KVCache, init_cache, positions_from_mask, repeat_rows,
                                   unstack)


class SampleOutput(NamedTuple):
  """Generated continuations, L = max_new_tokens.

  tokens: [N, L] int32; pad_id after a row's EOS (and after early exit).
  mask: [N, L] bool; True on real generated tokens, including the EOS itself.
  logprobs: [N, L] float32; log-prob under softmax(logits / temperature), 0 where mask is False.
  logprobs_t1: [N, L] float32; log-prob under softmax(logits), 0 where mask is False.
  """
  tokens: jax.Array
  mask: jax.Array
  logprobs: jax.Array
  logprobs_t1: jax.Array


def left_pad(prompts: Sequence[Sequence[int]], *, pad_id: int, max_new_tokens: int = 0,
             max_seq_len: int | None = None, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Left-pad variable-length prompts: returns (tokens [N, P] int32, mask [N, P] bool).

  P is `width` if given, else the longest prompt. Raises ValueError for an empty prompt, a prompt
  longer than `width`, or one whose length + max_new_tokens exceeds max_seq_len (the model's
  context), naming the offending prompt.
  """
  lengths = [len(p) for p in prompts]
  if not prompts:
    raise ValueError("no prompts given")
  width = max(lengths) if width is None else width
  for i, n in enumerate(lengths):
    if n == 0:
      raise ValueError(f"prompt {i} is empty; start prompts with at least a BOS token")
    if n > width:
      raise ValueError(f"prompt {i} has {n} tokens, more than the padded width {width}")
    if max_seq_len is not None and n + max_new_tokens > max_seq_len:
      raise ValueError(f"prompt {i} has {n} tokens; with max_new_tokens={max_new_tokens} that "
                       f"exceeds the model context of {max_seq_len}")
  tokens = np.full((len(prompts), width), pad_id, np.int32)
  mask = np.zeros((len(prompts), width), bool)
  for i, p in enumerate(prompts):
    tokens[i, width - len(p):] = p
    mask[i, width - len(p):] = True
  return tokens, mask


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
  """Keep the k largest logits per row ([..., V]), set the rest to -inf; k=0 keeps all.

  Ties with the k-th largest value are kept.
  """
  if k <= 0 or k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits >= kth, logits, -jnp.inf)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
  """Nucleus filter on [..., V]: keep the smallest set of most-likely tokens whose probability
  reaches p (always at least the top token); others -> -inf. p >= 1 keeps all."""
  if p >= 1.0:
    return logits
  sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  # A token is kept if the tokens ranked above it have not yet reached p.
  kept = jnp.where(mass_before < p, sorted_logits, jnp.inf)
  threshold = jnp.min(kept, axis=-1, keepdims=True)
  return jnp.where(logits >= threshold, logits, -jnp.inf)


def sampling_logits(logits: jax.Array, temperature, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """The logits actually sampled from: temperature-scaled, then top-k, then top-p (HF order)."""
  return top_p_filter(top_k_filter(logits / temperature, top_k), top_p)


def _token_logprob(logits, tokens, temperature=1.0):
  """logits [N, V], tokens [N] -> [N] log softmax(logits / temperature)[token]."""
  logp = jax.nn.log_softmax(logits / temperature, axis=-1)
  return jnp.take_along_axis(logp, tokens[:, None], axis=-1)[:, 0]


def inverse_cdf_sample(logits: jax.Array, uniform: jax.Array) -> jax.Array:
  """One token per row of logits [N, V] (-inf = excluded) from one uniform in [0, 1) per row.

  Token i is drawn with probability softmax(logits)_i: it is the first index where the running
  sum of exp(logits - max) exceeds uniform * total. One random number per row instead of V
  (Gumbel-max, `jax.random.categorical`) makes a decode step's sampling ~5x cheaper on CPU,
  where generating V threefry numbers per row cost more than the model's own step
  (docs/PERFORMANCE.md).
  """
  weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  # jnp.cumsum, not a log-depth associative_scan: the scan was ~15 us faster per decode step on
  # this CPU but, over a vocabulary sharded on 'tensor', took 42 more all-to-alls per train_step
  # (benchmarks/readiness.py).
  cdf = jnp.cumsum(weights, axis=-1)
  total = cdf[:, -1:]
  token = jnp.sum(cdf <= uniform[:, None] * total, axis=-1, dtype=jnp.int32)
  # If rounding puts the threshold on the total, take the first index where the running sum
  # reaches it, which always has mass (excluded tokens after it never do).
  return jnp.minimum(token, jnp.sum(cdf < total, axis=-1, dtype=jnp.int32))


def _choose(uniform, logits, temperature, *, top_k, top_p, greedy):
  """Pick one token per row from logits [N, V] -> (token [N], logprob [N], logprob_t1 [N])."""
  if greedy:
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  else:
    token = inverse_cdf_sample(sampling_logits(logits, temperature, top_k, top_p), uniform)
  return token, _token_logprob(logits, token, temperature), _token_logprob(logits, token)


class _Loop(NamedTuple):
  step: jax.Array      # [] int32: column of the next token to emit
  logits: jax.Array    # [N, V] float32: next-token logits
  cache: tuple         # KVCaches of the generated tokens, one chunk per decode bucket
  done: jax.Array      # [N] bool: row has emitted EOS
  out: SampleOutput


def _emit(loop: _Loop, uniforms, temperature, *, top_k, top_p, greedy, eos_id, pad_id):
  """Choose the next token for every row and record it at column `loop.step`.

  uniforms: [L, N], one uniform per row for each column. Returns (the loop state with outputs
  written and `done` updated, token [N], active [N]).
  """
  uniform = jax.lax.dynamic_index_in_dim(uniforms, loop.step, keepdims=False)
  token, lp, lp1 = _choose(uniform, loop.logits, temperature, top_k=top_k, top_p=top_p,
                           greedy=greedy)
  active = ~loop.done
  token = jnp.where(active, token, pad_id)
  write = lambda buf, col: jax.lax.dynamic_update_slice(buf, col[:, None], (0, loop.step))
  out = SampleOutput(tokens=write(loop.out.tokens, token),
                     mask=write(loop.out.mask, active),
                     logprobs=write(loop.out.logprobs, jnp.where(active, lp, 0.0)),
                     logprobs_t1=write(loop.out.logprobs_t1, jnp.where(active, lp1, 0.0)))
  # eos_id: [S] stop ids; -1 (no stop) never matches.
  done = loop.done | jnp.any(token[:, None] == eos_id[None, :], axis=-1)
  return loop._replace(done=done, out=out), token, active


def _generated_cache(cfg, prefix: KVCache, n: int, group_size: int, ends: list[int],
                     prompt_width: int, *, per_layer: bool, share_prefix: bool):
  """(chunks, shift, context) of the generated tokens' cache: one chunk per decode bucket
  (`ends`), all allocated here and written in place; `shift[j]` is the slot of bucket j's first
  generated token in chunk j; `context` the segments every step attends over besides them.
  Unshared, the first chunk starts with the prompt's slots (`shared_prefix_decode`)."""
  starts = [0] + ends[:-1]
  chunks = tuple(init_cache(cfg, n, end - start, per_layer=per_layer)
                 for start, end in zip(starts, ends))
  shift = [0] * len(ends)
  context = (prefix,)
  if not share_prefix:
    chunks = (repeat_rows(prefix, group_size, ends[0]),) + chunks[1:]
    shift[0], context = prompt_width, ()
  return chunks, shift, context


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "top_k", "top_p",
                                             "greedy", "group_size", "per_layer",
                                             "share_prefix"))
def _sample_jit(graphdef, state, prompt_tokens, prompt_mask, rng, temperature, eos_id, pad_id,
                uniforms, *, max_new_tokens, top_k, top_p, greedy, group_size, per_layer,
                share_prefix):
  model = nnx.merge(graphdef, state)
  cfg = model.cfg
  b, p = prompt_tokens.shape
  n = b * group_size
  if p + max_new_tokens > cfg.max_seq_len:
    raise ValueError(f"prompt width {p} + max_new_tokens {max_new_tokens} exceeds the model "
                     f"context of {cfg.max_seq_len}")
  prompt_mask = prompt_mask.astype(bool)
  # The prompt is prefilled once; its keys and values are shared by its group of rollouts.
  h, (k, v) = model.hidden(prompt_tokens, positions_from_mask(prompt_mask), prompt_mask,
                           keep_kv=True)
  prefix = KVCache(k, v, prompt_mask)
  logits = jnp.repeat(model.logits(h[:, -1]), group_size, axis=0)
  layers = None
  if per_layer:
    layers, prefix = model.unstack_layers(), unstack(prefix)
  prompt_len = jnp.repeat(prompt_mask.sum(-1).astype(jnp.int32), group_size)  # first new position
  if uniforms is None:
    uniforms = draw_uniforms(rng, max_new_tokens, n)
  empty = SampleOutput(tokens=jnp.full((n, max_new_tokens), pad_id, jnp.int32),
                       mask=jnp.zeros((n, max_new_tokens), bool),
                       logprobs=jnp.zeros((n, max_new_tokens), jnp.float32),
                       logprobs_t1=jnp.zeros((n, max_new_tokens), jnp.float32))
  emit = functools.partial(_emit, uniforms=uniforms, temperature=temperature, top_k=top_k,
                           top_p=top_p, greedy=greedy, eos_id=eos_id, pad_id=pad_id)
  ends = decode_buckets(max_new_tokens)
  starts = [0] + ends[:-1]
  chunks, shift, context = _generated_cache(cfg, prefix, n, group_size, ends, p,
                                            per_layer=layers is not None,
                                            share_prefix=share_prefix)
  # Left padding puts every row's last prompt token in the last column.
  carry = emit(_Loop(jnp.int32(0), logits, chunks, jnp.zeros((n,), bool), empty))
  carry = (carry[0]._replace(step=jnp.int32(1)),) + carry[1:]

  def body(carry, j):
    loop, token, active = carry
    # Feed the previous token (generated slot step - 1, in chunk j) to get the logits for
    # column `step`; it attends over the prompt, the full chunks before j and chunk j.
    prev = loop.step - 1
    h, chunk = model.hidden(token[:, None], (prompt_len + prev)[:, None], active[:, None],
                            context=(*context, *loop.cache[:j]), cache=loop.cache[j],
                            cache_index=prev - starts[j] + shift[j], layers=layers)
    cache = loop.cache[:j] + (chunk,) + loop.cache[j + 1:]
    loop, token, active = emit(loop._replace(logits=model.logits(h[:, 0]), cache=cache))
    return loop._replace(step=loop.step + 1), token, active

  for j, end in enumerate(ends):
    # Bucket j's steps write chunk j (slots below `end`); the last bucket runs to the cap.
    stop = max_new_tokens if end == max_new_tokens else end + 1
    cond = lambda carry, stop=stop: (carry[0].step < stop) & ~jnp.all(carry[0].done)
    carry = jax.lax.while_loop(cond, functools.partial(body, j=j), carry)
  return carry[0].out


def sample(graphdef, state, prompt_tokens, prompt_mask, rng, *, max_new_tokens: int,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           eos_id: int | Sequence[int] | None,
           pad_id: int, greedy: bool = False, group_size: int = 1,
           uniforms: jax.Array | None = None) -> SampleOutput:
  """Generate up to max_new_tokens per prompt, `group_size` times per prompt.

  prompt_tokens: [B, P] int32, left-padded (see `left_pad`); prompt_mask: [B, P] bool, every row
  with at least one real token. rng: a JAX PRNG key. temperature > 0 scales the logits (also in
  greedy mode, where it only affects the returned `logprobs`); top_k=0 and top_p=1 disable those
  filters. eos_id is one stop id or several (a chat model's end-of-turn and end-of-text);
  None never stops early (useful for benchmarks). group_size = G > 1 samples G
  continuations of each prompt (a GRPO group) from one prefill of it, whose cache they share;
  rows are prompt-major, as from sampling `jnp.repeat(prompt_tokens, G, axis=0)` with
  group_size 1 (the same tokens for the same rng, up to float rounding in the attention).
  Returns SampleOutput with [N = B * G, max_new_tokens] arrays; see the module docstring for
  which log-probs are which. Compiles once per (shapes, max_new_tokens, top_k, top_p, greedy,
  group_size); temperature, eos_id and pad_id are traced, so changing them does not recompile.
  uniforms: [max_new_tokens, N] numbers to draw the tokens from instead of
  `draw_uniforms(rng, max_new_tokens, N)` (rng is then unused): the rows of a batch sampled in
  chunks take their slices of one draw, so chunking does not change the tokens.
  """
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
  if not 0 < top_p <= 1:
    raise ValueError(f"top_p must be in (0, 1], got {top_p}")
  if top_k < 0:
    raise ValueError(f"top_k must be >= 0, got {top_k}")
  if group_size < 1:
    raise ValueError(f"group_size must be >= 1, got {group_size}")
  if not isinstance(prompt_mask, jax.core.Tracer) and not np.asarray(prompt_mask)[:, -1].all():
    # The first new token is read off the last column, so it must hold a real token per row.
    raise ValueError("every prompt row must be left-padded with a real token in the last "
                     "column (see left_pad)")
  return _sample_jit(graphdef, state, jnp.asarray(prompt_tokens, jnp.int32),
                     jnp.asarray(prompt_mask, bool), rng, jnp.float32(temperature),
                     stop_array(eos_id), jnp.int32(pad_id), uniforms,
                     max_new_tokens=max_new_tokens, top_k=int(top_k), top_p=float(top_p),
                     greedy=greedy, group_size=int(group_size), per_layer=per_layer_decode(),
                     share_prefix=shared_prefix_decode())
