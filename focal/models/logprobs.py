"""Log-probs and entropies of chosen tokens from final hidden states, through the LM head in chunks.

`head_logprobs` sends the hidden states through the LM head a chunk of positions at a time:
matmul -> log_softmax -> the chosen token's log-prob (and the entropy), inside a scan whose step
is rematerialised, so neither the forward nor the backward pass ever holds more than one chunk
of [rows, V] float32 logits (at a 152k vocabulary, 128 x 1024 positions of logits are 74 GiB).
When every position fits one chunk (small vocabularies) it is the plain computation, no scan.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def entropy_of(logp: jax.Array) -> jax.Array:
  """Entropy -sum_v p_v log p_v (nats) of distributions given by their log-probs [..., V]."""
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def _chunk(head, h, targets, temperature, with_entropy: bool):
  """h [R, D] @ head [D, V] -> (log-prob of targets [R], entropy [R] or None), in float32."""
  logits = jnp.matmul(h, head, preferred_element_type=jnp.float32)
  logp = jax.nn.log_softmax(logits / temperature, axis=-1)
  # A masked sum rather than a gather: its gradient is elementwise and fuses with the softmax's,
  # where a gather's is a scatter into a zeroed [R, V] buffer.
  chosen = jnp.arange(logp.shape[-1]) == targets[:, None]
  chosen_logp = jnp.sum(jnp.where(chosen, logp, 0.0), axis=-1)
  return chosen_logp, (entropy_of(logp) if with_entropy else None)


def head_logprobs(h: jax.Array, head: jax.Array, targets: jax.Array, *, chunk: int,
                  temperature=1.0, with_entropy: bool = False):
  """log_softmax(h @ head / temperature)[target] for every position: [...] float32.

  h: [..., D] final hidden states (compute dtype); head: [D, V] (compute dtype); targets: [...]
  int token ids. chunk: positions per chunk (> 0). with_entropy: also return the entropy [...]
  of each of those distributions.
  """
  shape = targets.shape
  rows = math.prod(shape)
  h = h.reshape(rows, h.shape[-1])
  targets = targets.reshape(rows)
  if rows <= chunk:
    logp, entropy = _chunk(head, h, targets, temperature, with_entropy)
  else:
    count = -(-rows // chunk)
    pad = count * chunk - rows
    hs = jnp.pad(h, ((0, pad), (0, 0))).reshape(count, chunk, h.shape[-1])
    ts = jnp.pad(targets, (0, pad)).reshape(count, chunk)
    # The backward pass recomputes each chunk's logits instead of keeping them.
    step = jax.checkpoint(_chunk, static_argnums=(4,), prevent_cse=False)

    def body(_, xs):
      return None, step(head, xs[0], xs[1], temperature, with_entropy)

    _, (logp, entropy) = jax.lax.scan(body, None, (hs, ts))
    logp = logp.reshape(-1)[:rows]
    entropy = None if entropy is None else entropy.reshape(-1)[:rows]
  logp = logp.reshape(shape)
  return (logp, entropy.reshape(shape)) if with_entropy else logp
