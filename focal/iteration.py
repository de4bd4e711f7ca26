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

from focal import aggregators, grpo, microbatch, nonfinite, sampling
from focal.decode_plan import draw_uniforms
from focal.advantages import make_estimator
from focal.batch import PromptBatch, Rollouts
from focal.models import lora
from focal.metrics.step import clipped_ratio, step_metrics, token_mean  # noqa: F401  (public)
from focal.update import policy_update, response_logprobs  # noqa: F401  (public)


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: checkpoint this and nothing is lost."""
  step: Any
  params: Any          # policy parameters (nnx.State)
  opt_state: Any
  ref_params: Any      # frozen reference for the KL term; None when beta = 0 (not stored)
  agg_state: Any       # the aggregator's state (POW3R factors, Focal EMA, ...)
  rng: Any
  # With LoRA (model.lora.rank > 0): the frozen base the adapters in `params` sit on, which is
  # also the reference policy. Loaded with the run, never checkpointed (focal.checkpoint).
  base: Any = None


def policy_params(state: TrainState):
  """The whole parameter state the policy's model reads: `params`, or base + adapters."""
  return lora.combine(state.base, state.params)


@dataclasses.dataclass(frozen=True)
class GRPOSettings:
  """Hyper-parameters of one GRPO iteration (METHODS §1)."""
  group_size: int = 8                 # G rollouts per prompt
  max_new_tokens: int = 40            # response length cap (the synthetic tasks need <= 40 bytes)
  temperature: float = 1.0            # sampling temperature; the loss scores log_softmax(logits / T)
  top_k: int = 0                      # 0 disables
  top_p: float = 1.0                  # 1 disables
  eos_id: int | tuple | None = None   # stop token(s): a chat model may end a turn on several
  pad_id: int = 0                     # fills responses after EOS
  mu: int = 1                         # passes over each rollout batch
  num_minibatches: int = 1            # mini-batches per pass (N must divide evenly): optimizer steps
  micro_batch_size: int = 0           # rollouts per forward/backward, gradients summed over them (0 = a mini-batch)
  rollout_micro_batch_size: int = 0   # rollouts per sampler call (0 = all N at once)
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
        ("micro_batch_size", self.micro_batch_size >= 0, ">= 0 (0: one pass per mini-batch)"),
        ("rollout_micro_batch_size", self.rollout_micro_batch_size >= 0,
         ">= 0 (0: every rollout at once)"),
        ("eps_low", 0 <= self.eps_low < 1, "in [0, 1)"),
        ("eps_high", self.eps_high >= 0, ">= 0"),
        ("beta", self.beta >= 0, ">= 0")):
      if not ok:  # NaN compares False, so it lands here too
        raise ValueError(f"grpo.{field} must be {rule}, got {getattr(self, field)!r}")
    if self.loss_aggregation not in grpo.LOSS_AGGREGATIONS:
      raise ValueError(f"unknown grpo.loss_aggregation {self.loss_aggregation!r}; "
                       f"choose from {grpo.LOSS_AGGREGATIONS}")
    nonfinite.check_mode(self.nonfinite)


MU_DTYPES = ("float32", "bfloat16")


def make_optimizer(learning_rate: float = 3e-4, grad_clip: float = 0.5,
                   weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
                   mu_dtype: str = "float32"):
  """POW3R's recipe: grad-norm clip then AdamW with a constant learning rate.

  mu_dtype: AdamW's first moment (bfloat16 halves its memory). The second moment stays float32
  (`init_train_state` builds the moments on float32 parameters): in bfloat16, nu's step
  (1 - b2) g^2 = 0.001 g^2 is below half its 2^-8 spacing and would be rounded away.
  """
  checks = (("learning_rate", lambda x: x > 0 and math.isfinite(x), "a finite number > 0"),
            ("grad_clip", lambda x: x > 0, "> 0"),
            ("weight_decay", lambda x: 0 <= x < math.inf, "a finite number >= 0"),
            ("b1", lambda x: 0 <= x < 1, "in [0, 1)"), ("b2", lambda x: 0 <= x < 1, "in [0, 1)"))
  if mu_dtype not in MU_DTYPES:
    raise ValueError(f"optimizer.mu_dtype must be one of {MU_DTYPES}, got {mu_dtype!r}")
  values = dict(learning_rate=learning_rate, grad_clip=grad_clip, weight_decay=weight_decay,
                b1=b1, b2=b2)
  for field, ok, rule in checks:
    value = values[field]
    # Python numbers only: a traced value (the simulator vmaps the learning rate) is the
    # caller's to check.
    if isinstance(value, (int, float)) and not ok(value):
      raise ValueError(f"optimizer.{field} must be {rule}, got {value!r}")
  return optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay,
                                 mu_dtype=jnp.dtype(mu_dtype)))


def init_train_state(params, tx, aggregator: aggregators.Aggregator, num_prompts: int,
                     max_criteria: int, rng, *, reference: bool = True,
                     ref_dtype: str | None = None, base=None) -> TrainState:
  """A fresh state. The optimizer's moments are built on float32 parameters (see
  `make_optimizer`); the reference policy is a frozen copy of the initial policy in `ref_dtype`
  (None: the parameters' own), or not stored (None) without `reference` (beta = 0 never reads it).
  With a LoRA `base` (focal.models.lora.attach), `params` are the trainable adapters and the
  reference is the base itself with the adapters off: no copy is stored.
  """
  f32 = lambda p: p.astype(jnp.float32) if jnp.issubdtype(p.dtype, jnp.floating) else p
  copy = jnp.copy if ref_dtype is None else lambda p: p.astype(ref_dtype)
  ref = None
  if reference and base is None:
    ref = jax.tree.map(copy, params)
  elif reference:  # only what trains beside the adapters (the embeddings), if anything
    ref = lora.frozen_copy(params, copy)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(jax.tree.map(f32, params)), ref_params=ref,
                    agg_state=aggregator.init(num_prompts, max_criteria), rng=rng, base=base)


def sample_rollouts(graphdef, params, batch: PromptBatch, rng, s: GRPOSettings,
                    batch_shards: int = 1) -> Rollouts:
  """G rollouts per prompt, `s.rollout_micro_batch_size` rollouts per sampler call (chunks of
  `focal.microbatch`). Every chunk takes its rows' slices of one draw of uniforms, so the tokens do not depend
  on the chunking (up to float rounding that moves a CDF boundary across a uniform)."""
  kw = dict(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
            top_p=s.top_p, eos_id=s.eos_id, pad_id=s.pad_id)
  b, g = batch.tokens.shape[0], s.group_size
  size = s.rollout_micro_batch_size or b * g
  lay = microbatch.layout(b, g, size, "grpo.rollout_micro_batch_size", batch_shards)
  if lay.chunks == 1:
    out = sampling.sample(graphdef, params, batch.tokens, batch.mask, rng, group_size=g, **kw)
    return Rollouts(out.tokens, out.mask)
  uniforms = draw_uniforms(rng, s.max_new_tokens, b * g).T  # [N, L]

  def chunk(x):
    tokens, mask, u = x
    out = sampling.sample(graphdef, params, tokens, mask, rng, uniforms=u.T,
                          group_size=lay.rows, **kw)
    return out.tokens, out.mask

  out = jax.lax.map(chunk, (microbatch.split_prompts(batch.tokens, lay),
                            microbatch.split_prompts(batch.mask, lay),
                            microbatch.split_rows(uniforms, lay)))
  return Rollouts(*(microbatch.merge_rows(x, lay) for x in out))


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
                estimator_hparams: dict | None = None, batch_shards: int = 1) -> Engine:
  """Builds pure (unjitted) step functions; jit them with the shardings you need.

  Args:
    graphdef: the policy's nnx.GraphDef (static).
    tx: an optax optimizer.
    aggregator: from `focal.aggregators.make`.
    settings: GRPOSettings.
    estimator: an advantage estimator name from `focal.advantages` or the function itself.
    grader: programmatic grader `(features, response, response_mask) -> scores [N, K]`.
    batch_shards: the devices the batch's rows are split over (data x fsdp): micro-batches take
      rows from each alike (`focal.microbatch`). Only speed and memory depend on it.
  """
  s = settings
  estimate = (make_estimator(estimator, **(estimator_hparams or {}))
              if isinstance(estimator, str) else estimator)

  def rollout_step(state: TrainState, batch: PromptBatch):
    rng, sample_rng = jax.random.split(state.rng)
    return state.replace(rng=rng), sample_rollouts(graphdef, policy_params(state), batch,
                                                   sample_rng, s, batch_shards)

  def learn_step(state: TrainState, batch: PromptBatch, rollouts: Rollouts, scores, valid):
    b, g = batch.tokens.shape[0], s.group_size
    scores = scores.reshape(b, g, -1)
    valid = valid.reshape(b, g, -1)
    rewards, agg_state, agg_metrics = aggregator.update(scores, valid, batch.rubric, state.agg_state)
    advantages, adv_metrics = estimate(rewards, scores, valid, batch.rubric)
    rng, perm_rng = jax.random.split(state.rng)
    params, opt_state, inner = policy_update(graphdef, tx, s, state, batch, rollouts,
                                             advantages.reshape(b * g), perm_rng, batch_shards)
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
