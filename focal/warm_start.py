"""A short supervised phase on reference responses before RL (METHODS §8).

Rubric RL starts from an instruction-tuned model, not from noise: a random
policy passes nothing, so every group has zero variance and no aggregator can
teach it. The warm start imitates the task's synthetic reference responses,
a deliberate mix that leaves some criteria saturated, some dead and some
contrastive, as POW3R measured on real models. It is deterministic in its
inputs, and its result is cached on disk per setting.
"""
from __future__ import annotations

import hashlib
import json
import os
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from focal.models.transformer import token_logprobs


def next_token_loss(graphdef, params, tokens, loss_mask, attention_mask):
  """Mean negative log-likelihood of tokens[:, 1:] where loss_mask[:, 1:] (the responses)."""
  logp = token_logprobs(graphdef, params, tokens, attention_mask)
  m = loss_mask[:, 1:].astype(jnp.float32)
  return -jnp.sum(logp * m) / jnp.maximum(jnp.sum(m), 1.0)


def build_sequences(prompt_tokens, prompt_mask, response_tokens, response_mask):
  """Concatenates left-padded prompts [N, P] and right-padded responses [N, L].

  Returns (tokens [N, P+L], attention_mask [N, P+L], loss_mask [N, P+L]).
  """
  tokens = np.concatenate([prompt_tokens, response_tokens], 1).astype(np.int32)
  attention = np.concatenate([prompt_mask, response_mask], 1)
  loss = np.concatenate([np.zeros_like(prompt_mask), response_mask], 1)
  return tokens, attention, loss


def supervised_warm_start(graphdef, params, sequences, *, steps: int, batch_size: int,
                          learning_rate: float, seed: int, cache_path: str | None = None,
                          progress: bool = True):
  """Fine-tunes `params` on `sequences` (tokens, attention_mask, loss_mask [N, T]).

  Returns (params, losses [steps]). With `cache_path`, a finished result is read
  from there instead of recomputed, and written there when computed.
  """
  if cache_path and os.path.exists(cache_path):
    with open(cache_path, "rb") as f:
      cached = flax.serialization.msgpack_restore(f.read())
    return _restore_into(params, cached["params"]), np.asarray(cached["losses"])
  if steps <= 0:
    return params, np.zeros((0,), np.float32)
  tokens, attention, loss_mask = (jnp.asarray(x) for x in sequences)
  n = tokens.shape[0]
  tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, idx):
    loss, grads = jax.value_and_grad(
        lambda p: next_token_loss(graphdef, p, tokens[idx], loss_mask[idx], attention[idx]))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  losses = []
  for _ in tqdm(range(steps), desc="warm start", disable=not progress, leave=False):
    idx = jnp.asarray(rng.choice(n, size=min(batch_size, n), replace=False))
    params, opt_state, loss = step(params, opt_state, idx)
    losses.append(loss)
  losses = np.asarray(jax.device_get(losses), np.float32)
  if cache_path:
    _atomic_write(cache_path, flax.serialization.msgpack_serialize(
        {"params": _pure(params), "losses": losses}))
  return params, losses


def cache_key(**setting) -> str:
  """A short stable hash of everything the warm-started parameters depend on."""
  return hashlib.sha256(json.dumps(setting, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_file(cache_dir: str, **setting) -> str | None:
  """The file caching the warm start of `setting` under `cache_dir` (None when `cache_dir` is
  empty: no caching).

  The key leaves `cache_dir` out, so a cache copied or moved to another directory (or another
  machine's home) still hits: recomputing a warm start on another CPU gives another policy.
  A file written under the older key, which hashed `cache_dir` with the setting, is renamed
  to the new key on first use rather than recomputed.
  """
  if not cache_dir:
    return None
  root = os.path.expanduser(cache_dir)
  path = os.path.join(root, f"{cache_key(**setting)}.msgpack")
  legacy = os.path.join(root, f"{cache_key(**setting, cache_dir=cache_dir)}.msgpack")
  if not os.path.exists(path) and os.path.exists(legacy):
    os.replace(legacy, path)
  return path


def fingerprint(tree) -> str:
  """A short hash of the shapes, dtypes and bytes of every array in `tree`.

  Part of the cache key, so a cached warm start is reused only for the very
  sequences and initial parameters it was computed from: the config fields alone
  miss a prompt width padded for a stacked seed axis, a changed held-out count
  that widens the prompts, and changes to the task or model code.
  """
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def _pure(params):
  return jax.tree.map(np.asarray, nnx.State(params).to_pure_dict())


def _restore_into(params, pure):
  state = jax.tree.map(lambda x: x, params)  # a new container; the caller's is left alone
  state.replace_by_pure_dict(jax.tree.map(jnp.asarray, pure))
  return state


def _atomic_write(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def make_reference_sequences(task, prompt_tokens, prompt_mask, features, *, per_prompt: int,
                             quality: float, seed: int) -> tuple:
  """`per_prompt` reference responses per prompt, joined to their prompts."""
  rng = np.random.default_rng(seed)
  reps = lambda a: np.repeat(np.asarray(a), per_prompt, axis=0)
  responses, response_mask = task.reference_responses(reps(features), rng, quality)
  return build_sequences(reps(prompt_tokens), reps(prompt_mask), np.asarray(responses),
                         np.asarray(response_mask))
