"""The policy update of one GRPO iteration (METHODS §1): `mu` passes over the rollouts in
`num_minibatches` mini-batches, one optimizer update per mini-batch, each mini-batch's gradient
accumulated over micro-batches of `micro_batch_size` rollouts.

Micro-batches change memory, not maths: a forward/backward holds one micro-batch's activations,
the gradient is summed over the micro-batches in float32, and every loss aggregation is
normalised so that the sum is the mini-batch's own loss (`micro_weight`): the update equals the
one-pass update up to summation order. The old-policy and reference log-prob passes go through
the same micro-batches (`logprobs_in_chunks`). Log-probs are of the sampling distribution,
log_softmax(logits / temperature), as in TRL, verl and OpenRLHF.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from focal import grpo, microbatch
from focal.batch import PromptBatch, Rollouts
from focal.metrics.step import token_mean
from focal.models import lora
from focal.models.transformer import grouped_response_logprobs, token_logprobs


class Micro(NamedTuple):
  """The rows one forward/backward sees: p prompts [p, P] with h rollouts each ([p * h, L]
  prompt-major, the grouped pass), or one prompt row per rollout (h = 1)."""
  prompt_tokens: Any
  prompt_mask: Any
  tokens: Any
  mask: Any
  adv: Any
  old: Any   # [m, L] old-policy log-probs, or None: the loss's own forward, stopped
  ref: Any   # [m, L] reference log-probs, or None (beta = 0)


def response_logprobs(graphdef, params, prompt_tokens, prompt_mask, rollouts: Rollouts, *,
                      temperature: float = 1.0, with_entropy: bool = False):
  """[N, L] log-probs under log_softmax(logits / temperature) of each generated token given its
  prefix, one prompt row per rollout; with_entropy: also the [N, L] entropy at those positions."""
  tokens = jnp.concatenate([prompt_tokens, rollouts.tokens], axis=1)
  mask = jnp.concatenate([prompt_mask, rollouts.mask], axis=1)
  out = token_logprobs(graphdef, params, tokens, mask, temperature=temperature,
                       with_entropy=with_entropy)
  response = lambda x: x[:, prompt_tokens.shape[1] - 1:]
  return tuple(map(response, out)) if with_entropy else response(out)


def logprobs_in_chunks(graphdef, batch: PromptBatch, rollouts: Rollouts,
                       lay: microbatch.Layout, temperature: float, params):
  """[N, L] log-probs of every rollout, computed `lay.size` rollouts at a time (grouped)."""
  logp = functools.partial(grouped_response_logprobs, graphdef, params, temperature=temperature)
  if lay.chunks == 1:
    return logp(batch.tokens, batch.mask, rollouts.tokens, rollouts.mask, lay.group)
  xs = (microbatch.split_prompts(batch.tokens, lay), microbatch.split_prompts(batch.mask, lay),
        microbatch.split_rows(rollouts.tokens, lay), microbatch.split_rows(rollouts.mask, lay))
  out = jax.lax.map(lambda x: logp(*x, lay.rows), xs)
  return microbatch.merge_rows(out, lay)


def micro_weight(loss_aggregation: str, chunks: int) -> float:
  """The factor that makes the micro-batches' losses sum to the mini-batch's loss: the
  row-normalised aggregations (a mean over sequences, Dr. GRPO's / (rows x max_len)) average
  over `chunks` equal micro-batches; token_mean already divides by the mini-batch's tokens."""
  return 1.0 if loss_aggregation == "token_mean" else 1.0 / chunks


def to_device(tree):
  """`tree` in device memory: the reference may live in host memory between uses
  (`mesh.ref_memory_kind`); already on the device, this is no copy."""
  return jax.device_put(tree, jax.memory.Space.Device)


def reference_params(state):
  """The KL term's reference policy: the stored frozen copy, or with LoRA the base itself with
  the adapters off (beta > 0 costs no second copy of the model); embeddings that train beside
  the adapters (model.lora.train_embeddings) come from `ref_params`, their initial values."""
  if state.base is None:
    if state.ref_params is None:
      raise ValueError("grpo.beta > 0 needs a reference policy, and this train state holds none "
                       "(init_train_state(..., reference=False))")
    return to_device(state.ref_params)
  ref = lora.adapters_off(lora.combine(state.base, state.params))
  return ref if state.ref_params is None else lora.combine(ref, to_device(state.ref_params))


def _micro_grad_fn(graphdef, s, full, num_tokens, weight: float):
  """micro_grad(params, x: Micro, group) -> (weighted loss, metrics, float32 gradient) of one
  micro-batch; `full` puts the trainable parameters on the frozen base (LoRA), `num_tokens` is
  the mini-batch's share of the batch's tokens, `weight` the micro-batch's (`micro_weight`)."""
  def micro_grad(params, x: Micro, group: int):
    def loss_fn(params):
      # The entropy comes from the loss's own log-softmax: a diagnostic (aux), not in the loss.
      logp, entropy = grouped_response_logprobs(
          graphdef, full(params), x.prompt_tokens, x.prompt_mask, x.tokens, x.mask, group,
          temperature=s.temperature, with_entropy=True) if group > 1 else response_logprobs(
          graphdef, full(params), x.prompt_tokens, x.prompt_mask, Rollouts(x.tokens, x.mask),
          temperature=s.temperature, with_entropy=True)
      old = jax.lax.stop_gradient(logp) if x.old is None else x.old
      loss, metrics = grpo.grpo_loss(
          logp, old, old if x.ref is None else x.ref, x.adv, x.mask, eps_low=s.eps_low,
          eps_high=s.eps_high, beta=s.beta, loss_aggregation=s.loss_aggregation,
          max_len=s.max_new_tokens, num_tokens=num_tokens)
      metrics["entropy"] = token_mean(jax.lax.stop_gradient(entropy), x.mask)
      return loss * weight, metrics

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    # Float32 sums, whatever the parameters' dtype (bfloat16 gradients lose small micro-batches).
    return loss, metrics, jax.tree.map(lambda g: g.astype(jnp.float32), grads)

  return micro_grad


def _minibatch_grads_fn(micro_grad, chunks: int):
  """minibatch_grads(params, xs: Micro, group) -> (float32 gradient, metrics) of one mini-batch:
  xs holds `chunks` stacked micro-batches, whose gradients `micro_grad` gives."""
  def minibatch_grads(params, xs: Micro, group: int):
    if chunks == 1:
      loss, metrics, grads = micro_grad(params, jax.tree.map(lambda a: a[0], xs), group)
      return grads, {**metrics, "loss": loss}

    def body(carry, x):
      acc, sums = carry
      loss, metrics, grads = micro_grad(params, x, group)
      tokens = jnp.sum(x.mask).astype(jnp.float32)
      # The loss sums as it is weighted; the other metrics are token means: weigh by tokens.
      new = {k: sums[k] + (loss if k == "loss" else v * tokens) for k, v in metrics.items()}
      return (jax.tree.map(jnp.add, acc, grads), {**new, "tokens": sums["tokens"] + tokens}), None

    first = jax.tree.map(lambda a: a[0], xs)
    shapes = jax.eval_shape(lambda: micro_grad(params, first, group))
    zeros = lambda tree: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)
    init = (zeros(shapes[2]), {**zeros(shapes[1]), "loss": jnp.zeros((), jnp.float32),
                               "tokens": jnp.zeros((), jnp.float32)})
    (grads, sums), _ = jax.lax.scan(body, init, xs)
    total = jnp.maximum(sums.pop("tokens"), 1.0)
    return grads, {k: v if k == "loss" else v / total for k, v in sums.items()}

  return minibatch_grads


def _micro_batches(s, n: int) -> tuple[int, int]:
  """(rollouts per micro-batch, micro-batches per mini-batch) of a step of n rollouts."""
  if n % s.num_minibatches:
    raise ValueError(f"{n} rollouts do not split into {s.num_minibatches} mini-batches")
  mini = n // s.num_minibatches
  micro = s.micro_batch_size or mini
  if mini % micro:
    raise ValueError(f"grpo.micro_batch_size={micro} does not divide the {mini} rollouts of a "
                     f"mini-batch")
  return micro, mini // micro


def _single_pass_micros(batch: PromptBatch, rollouts: Rollouts, adv, ref_logp,
                        lay: microbatch.Layout, chunks: int) -> Micro:
  """The one mini-batch of a single pass, every row in order, as `chunks` stacked micro-batches
  of whole prompts (grouped)."""
  if chunks == 1:  # no reshape at all: the grouped pass over the batch as it is
    whole = Micro(batch.tokens, batch.mask, rollouts.tokens, rollouts.mask, adv, None, ref_logp)
    return jax.tree.map(lambda a: a[None], whole)
  return Micro(microbatch.split_prompts(batch.tokens, lay),
               microbatch.split_prompts(batch.mask, lay),
               *(None if x is None else microbatch.split_rows(x, lay)
                 for x in (rollouts.tokens, rollouts.mask, adv, None, ref_logp)))


def policy_update(graphdef, tx, s, state, batch: PromptBatch, rollouts: Rollouts, adv, perm_rng,
                  batch_shards: int = 1):
  """(params, opt_state, per-update metrics) after the updates on rollouts with advantages
  `adv` [N]; `s` is the run's GRPOSettings, `batch_shards` as in `focal.iteration.make_engine`."""
  b, g = batch.tokens.shape[0], s.group_size
  n = b * g
  micro, chunks = _micro_batches(s, n)
  # With one pass over one mini-batch the policy that sampled is the one being updated: its
  # log-probs are the loss's own forward (stopped), which saves a whole forward pass. That one
  # mini-batch is every row in order (a shuffle would only change the summation order), so its
  # micro-batches hold whole prompts (grouped) too.
  single_pass = s.mu == 1 and s.num_minibatches == 1
  lay = microbatch.layout(b, g, micro, "grpo.micro_batch_size", batch_shards)
  passes = functools.partial(logprobs_in_chunks, graphdef, batch, rollouts, lay, s.temperature)
  # With LoRA the optimizer sees the adapters alone; the model reads them on the frozen base.
  full = functools.partial(lora.combine, state.base)
  old_logp = None if single_pass else jax.lax.stop_gradient(passes(full(state.params)))
  ref_logp = None
  if s.beta:
    ref_logp = jax.lax.stop_gradient(passes(reference_params(state)))
  # Each mini-batch carries its share of the batch's tokens, so token_mean over mini-batches
  # weighs every token of the rollout batch alike.
  num_tokens = jnp.sum(rollouts.mask).astype(jnp.float32) / s.num_minibatches
  micro_grad = _micro_grad_fn(graphdef, s, full, num_tokens,
                              micro_weight(s.loss_aggregation, chunks))
  minibatch_grads = _minibatch_grads_fn(micro_grad, chunks)

  def update(carry, xs: Micro, group: int):
    params, opt_state = carry
    grads, metrics = minibatch_grads(params, xs, group)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), {**metrics, "grad_norm": optax.global_norm(grads)}

  start = (state.params, state.opt_state)
  if single_pass:
    xs = _single_pass_micros(batch, rollouts, adv, ref_logp, lay, chunks)
    (params, opt_state), inner = update(start, xs, lay.rows if chunks > 1 else g)
    return params, opt_state, jax.tree.map(lambda a: a[None], inner)

  # Shuffled mini-batches: any rows, so one prompt row per rollout.
  rows = Micro(jnp.repeat(batch.tokens, g, axis=0), jnp.repeat(batch.mask, g, axis=0),
               rollouts.tokens, rollouts.mask, adv, old_logp, ref_logp)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(perm_rng, s.mu))
  order = perms.reshape(s.mu * s.num_minibatches, chunks, micro)
  step = lambda carry, idx: update(carry, jax.tree.map(lambda a: a[idx], rows), 1)
  (params, opt_state), inner = jax.lax.scan(step, start, order)
  return params, opt_state, inner
