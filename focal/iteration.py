"""One GRPO iteration as a pure, jit-compiled function of (state, batch).

  state, metrics = train_step(state, batch)

samples G rollouts per prompt with a KV cache, grades them, aggregates the
per-criterion verdicts into one reward per rollout, turns rewards into
advantages, and takes `mu` passes of mini-batch updates of the clipped GRPO
loss. Every random choice draws from `state.rng`, so a step is a pure function
of its inputs and a resumed run repeats an uninterrupted one exactly.

Graders. A programmatic grader is a jittable function
`grade(features [N, F], response [N, L], response_mask [N, L]) -> scores [N, K]`
and runs inside the step. A host-side grader (an LLM judge, regexes over
decoded text) cannot: for it, call the two halves yourself,

  rollouts = rollout_step(state, batch)          # jitted: sample G per prompt
  scores, valid = judge(rollouts)                # host: any Python
  state, metrics = learn_step(state, batch, rollouts, scores, valid)   # jitted

which is exactly what `train_step` does in one program.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from focal import aggregators, grpo, nonfinite, sampling
from focal.advantages import make_estimator
from focal.batch import PromptBatch, Rollouts
from focal.models.transformer import grouped_response_logprobs, token_logprobs
from focal.metrics.step import clipped_ratio, step_metrics, token_mean  # noqa: F401  (public)


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: checkpoint this and nothing is lost."""
  step: Any
  params: Any          # policy parameters (nnx.State)
  opt_state: Any
  ref_params: Any      # frozen reference for the KL term
  agg_state: Any       # the aggregator's state (POW3R factors, Focal EMA, ...)
  rng: Any


@dataclasses.dataclass(frozen=True)
class GRPOSettings:
  """Hyper-parameters of one GRPO iteration (METHODS §1)."""
  group_size: int = 8                 # G rollouts per prompt
  max_new_tokens: int = 32            # response length cap
  temperature: float = 1.0            # sampling temperature
  top_k: int = 0                      # 0 disables
  top_p: float = 1.0                  # 1 disables
  eos_id: int | tuple | None = None   # stop token(s): a chat model may end a turn on several
  pad_id: int = 0                     # fills responses after EOS
  mu: int = 1                         # passes over each rollout batch
  num_minibatches: int = 1            # mini-batches per pass (N must divide evenly)
  eps_low: float = 0.2                # clip range below 1
  eps_high: float = 0.2               # clip range above 1
  beta: float = 0.0                   # k3 KL weight
  loss_aggregation: str = "seq_mean_token_mean"
  nonfinite: str = "stop"             # non-finite step: "stop" or "skip_update" (focal.nonfinite)

  def __post_init__(self):
    for field, ok, rule in (
        ("group_size", self.group_size >= 2, ">= 2 (group advantages need two rollouts)"),
        ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
        ("temperature", self.temperature > 0, "> 0 (greedy decoding is for evaluation)"),
        ("top_k", self.top_k >= 0, ">= 0 (0 disables)"),
        ("top_p", 0 < self.top_p <= 1, "in (0, 1] (1 disables)"),
        ("mu", self.mu >= 1, ">= 1"),
        ("num_minibatches", self.num_minibatches >= 1, ">= 1"),
        ("eps_low", 0 <= self.eps_low < 1, "in [0, 1)"),
        ("eps_high", self.eps_high >= 0, ">= 0"),
        ("beta", self.beta >= 0, ">= 0")):
      if not ok:  # NaN compares False, so it lands here too
        raise ValueError(f"grpo.{field} must be {rule}, got {getattr(self, field)!r}")
    if self.loss_aggregation not in grpo.LOSS_AGGREGATIONS:
      raise ValueError(f"unknown grpo.loss_aggregation {self.loss_aggregation!r}; "
                       f"choose from {grpo.LOSS_AGGREGATIONS}")
    nonfinite.check_mode(self.nonfinite)


def make_optimizer(learning_rate: float = 1e-4, grad_clip: float = 0.5,
                   weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999):
  """POW3R's recipe: grad-norm clip then AdamW with a constant learning rate."""
  checks = (("learning_rate", lambda x: x > 0 and math.isfinite(x), "a finite number > 0"),
            ("grad_clip", lambda x: x > 0, "> 0"),
            ("weight_decay", lambda x: 0 <= x < math.inf, "a finite number >= 0"),
            ("b1", lambda x: 0 <= x < 1, "in [0, 1)"), ("b2", lambda x: 0 <= x < 1, "in [0, 1)"))
  values = dict(learning_rate=learning_rate, grad_clip=grad_clip, weight_decay=weight_decay,
                b1=b1, b2=b2)
  for field, ok, rule in checks:
    value = values[field]
    # Python numbers only: a traced value (the simulator vmaps the learning rate) is the
    # caller's to check.
    if isinstance(value, (int, float)) and not ok(value):
      raise ValueError(f"optimizer.{field} must be {rule}, got {value!r}")
  return optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay))


def init_train_state(params, tx, aggregator: aggregators.Aggregator, num_prompts: int,
                     max_criteria: int, rng) -> TrainState:
  """A fresh state; the reference policy is a frozen copy of the initial policy."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ref_params=jax.tree.map(jnp.copy, params),
                    agg_state=aggregator.init(num_prompts, max_criteria), rng=rng)


def response_logprobs(graphdef, params, prompt_tokens, prompt_mask, rollouts: Rollouts, *,
                      with_entropy: bool = False):
  """[N, L] log-probs (temperature 1) of each generated token given its prefix; with_entropy:
  also the [N, L] entropy of the policy at each of those positions."""
  tokens = jnp.concatenate([prompt_tokens, rollouts.tokens], axis=1)
  mask = jnp.concatenate([prompt_mask, rollouts.mask], axis=1)
  out = token_logprobs(graphdef, params, tokens, mask, with_entropy=with_entropy)
  response = lambda x: x[:, prompt_tokens.shape[1] - 1:]
  return tuple(map(response, out)) if with_entropy else response(out)


def _repeat_prompts(batch: PromptBatch, g: int):
  return (jnp.repeat(batch.tokens, g, axis=0), jnp.repeat(batch.mask, g, axis=0),
          jnp.repeat(batch.features, g, axis=0))


class Engine(NamedTuple):
  """The jittable halves of a GRPO iteration and their composition."""
  rollout_step: Callable   # (state, batch) -> (state, Rollouts)
  learn_step: Callable     # (state, batch, rollouts, scores, valid) -> (state, metrics)
  train_step: Callable     # (state, batch) -> (state, metrics); needs a programmatic grader


def make_engine(graphdef, tx, aggregator: aggregators.Aggregator, settings: GRPOSettings,
                estimator: str | Callable = "grpo", grader: Callable | None = None,
                estimator_hparams: dict | None = None) -> Engine:
  """Builds pure (unjitted) step functions; jit them with the shardings you need.

  Args:
    graphdef: the policy's nnx.GraphDef (static).
    tx: an optax optimizer.
    aggregator: from `focal.aggregators.make`.
    settings: GRPOSettings.
    estimator: an advantage estimator name from `focal.advantages` or the function itself.
    grader: programmatic grader `(features, response, response_mask) -> scores [N, K]`.
  """
  s = settings
  estimate = (make_estimator(estimator, **(estimator_hparams or {}))
              if isinstance(estimator, str) else estimator)

  def rollout_step(state: TrainState, batch: PromptBatch):
    rng, sample_rng = jax.random.split(state.rng)
    out = sampling.sample(graphdef, state.params, batch.tokens, batch.mask, sample_rng,
                          max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                          top_k=s.top_k, top_p=s.top_p, eos_id=s.eos_id, pad_id=s.pad_id,
                          group_size=s.group_size)
    return state.replace(rng=rng), Rollouts(out.tokens, out.mask)

  def learn_step(state: TrainState, batch: PromptBatch, rollouts: Rollouts, scores, valid):
    b, g = batch.tokens.shape[0], s.group_size
    scores = scores.reshape(b, g, -1)
    valid = valid.reshape(b, g, -1)
    rewards, agg_state, agg_metrics = aggregator.update(scores, valid, batch.rubric, state.agg_state)
    advantages, adv_metrics = estimate(rewards, scores, valid, batch.rubric)
    rng, perm_rng = jax.random.split(state.rng)
    params, opt_state, inner = policy_update(graphdef, tx, s, state, batch, rollouts,
                                             advantages.reshape(b * g), perm_rng)
    bad = nonfinite.nonfinite_code(rewards, advantages, inner["loss"], inner["grad_norm"], params)
    if s.nonfinite == "skip_update":
      params, opt_state, agg_state = nonfinite.keep_if(
          bad > 0, (state.params, state.opt_state, state.agg_state), (params, opt_state, agg_state))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              agg_state=agg_state, rng=rng)
    metrics = step_metrics(rewards, scores, valid, batch.rubric, rollouts, agg_metrics,
                            adv_metrics, inner, s)
    metrics[nonfinite.METRIC] = bad
    return new_state, metrics

  def train_step(state: TrainState, batch: PromptBatch):
    if grader is None:
      raise ValueError("train_step needs a programmatic grader; use rollout_step + a host "
                       "grader + learn_step otherwise")
    state, rollouts = rollout_step(state, batch)
    _, _, features = _repeat_prompts(batch, s.group_size)
    scores = grader(features, rollouts.tokens, rollouts.mask)
    return learn_step(state, batch, rollouts, scores, jnp.ones(scores.shape, bool))

  return Engine(rollout_step, learn_step, train_step)


def policy_update(graphdef, tx, s: GRPOSettings, state: TrainState, batch: PromptBatch,
                  rollouts: Rollouts, adv, perm_rng):
  """`mu` passes of mini-batch updates of the clipped GRPO loss on the rollouts, whose
  advantages are `adv` [N]: returns (params, opt_state, per-update metrics)."""
  b, g = batch.tokens.shape[0], s.group_size
  n = b * g
  prompt_tokens, prompt_mask, _ = _repeat_prompts(batch, g)

  def logp_of(params, idx, with_entropy=False):
    if idx is None:  # every row in order: each prompt runs once for its whole group
      return grouped_response_logprobs(graphdef, params, batch.tokens, batch.mask,
                                       rollouts.tokens, rollouts.mask, g,
                                       with_entropy=with_entropy)
    return response_logprobs(graphdef, params, prompt_tokens[idx], prompt_mask[idx],
                             Rollouts(*(x[idx] for x in rollouts)), with_entropy=with_entropy)

  rows = lambda x, idx: x if idx is None else x[idx]
  # With one pass over one mini-batch the policy that sampled is the one being
  # updated: its log-probs are the loss's own forward (stopped), which saves a
  # whole forward pass over the rollouts. That one mini-batch is every row, in order
  # (a shuffle would only change the summation order), so it shares prompts too.
  single_pass = s.mu == 1 and s.num_minibatches == 1
  old_logp = None if single_pass else jax.lax.stop_gradient(logp_of(state.params, None))
  ref_logp = jax.lax.stop_gradient(logp_of(state.ref_params, None)) if s.beta else None
  num_tokens = jnp.sum(rollouts.mask).astype(jnp.float32)

  def loss_fn(params, idx):
    # The entropy comes from the loss's own log-softmax: a diagnostic (aux), not in the loss.
    logp, entropy = logp_of(params, idx, with_entropy=True)
    old = jax.lax.stop_gradient(logp) if single_pass else rows(old_logp, idx)
    mask = rows(rollouts.mask, idx)
    loss, metrics = grpo.grpo_loss(
        logp, old, old if ref_logp is None else rows(ref_logp, idx), rows(adv, idx),
        mask, eps_low=s.eps_low, eps_high=s.eps_high, beta=s.beta,
        loss_aggregation=s.loss_aggregation, max_len=s.max_new_tokens,
        # Each mini-batch carries its share of the batch's tokens, so token_mean
        # over mini-batches weighs every token of the rollout batch alike.
        num_tokens=num_tokens / s.num_minibatches)
    metrics["entropy"] = token_mean(jax.lax.stop_gradient(entropy), mask)
    return loss, metrics

  def minibatch_update(carry, idx):
    params, opt_state = carry
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, idx)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), {**metrics, "grad_norm": optax.global_norm(grads)}

  if n % s.num_minibatches:
    raise ValueError(f"{n} rollouts do not split into {s.num_minibatches} mini-batches")
  if single_pass:
    (params, opt_state), inner = minibatch_update((state.params, state.opt_state), None)
  else:
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(perm_rng, s.mu))
    order = perms.reshape(s.mu * s.num_minibatches, n // s.num_minibatches)
    (params, opt_state), inner = jax.lax.scan(minibatch_update,
                                              (state.params, state.opt_state), order)
  return params, opt_state, inner
