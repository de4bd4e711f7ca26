"""A whole simulated GRPO run as one `jax.lax.scan`, a pure function of (seed, knobs).

Each step, exactly as `focal.iteration` does it for a language model: sample G
rollouts (types) per prompt, judge them, `aggregators.make(...).update`,
`advantages.make_estimator(...)`, then `mu` AdamW steps
(`focal.iteration.make_optimizer`) on `focal.grpo.grpo_loss` with each rollout a
one-token sequence whose log-prob is log pi(type). Every step visits all P
prompts once (a step is an epoch), so adaptive per-prompt state moves every step.

  simulate = make_simulator(spec)
  out = simulate(seed, knobs)           # one run; jit/vmap it over seeds and knobs
  out = run_lanes(spec, seeds, knobs)   # jitted vmap over lanes (seeds [L], knobs of [L])
  out = run_lanes(spec, seeds, knobs, {"aggregator.gamma": gammas})  # [L] hyper-parameters too

A hyper-parameter given per lane ({"aggregator.<hparam>" or "estimator.<hparam>": value})
replaces the spec's value and is traced, so it must not decide the program's
structure (`lane_hparams_ok` tells which can); the spec's own values are static.

`out["eval"]` holds `focal.sim.metrics.expected_metrics` at steps
0, log_every, ..., steps ([S + 1, ...], S = steps / log_every); `out["train"]`
the diagnostics of each interval's last training batch ([S, ...]). With
`num_heldout > 0`, `out["heldout"]` holds the same metrics on held-out prompts:
a second world of that many prompts drawn from the same population (the
training world's shared map of pass patterns; `focal.sim.world`), never sampled
or trained on, evaluated with the policy's shared map alone. The training
prompts' world and run are the same with or without held-out prompts.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax

from focal import aggregators, grpo
from focal.advantages import make_estimator
from focal.metrics.evaluation import compute_metrics
from focal.sim import judge as judge_lib
from focal.sim import policy
from focal.sim.knobs import Knobs
from focal.sim.metrics import expected_metrics
from focal.sim.population import make_population
from focal.sim.world import CLASS_NAMES, World, make_world, raw_pass_prob
from focal.iteration import GRPOSettings, make_optimizer


# The GRPO and optimizer settings a simulated run shares with a real one: the real loop's
# defaults (focal.iteration), stated there only.
_GRPO = GRPOSettings()
_OPTIMIZER = {p.name: p.default for p in inspect.signature(make_optimizer).parameters.values()}
GRPO_FIELDS = ("mu", "eps_low", "eps_high", "beta")
OPTIMIZER_FIELDS = ("grad_clip", "weight_decay")


@dataclasses.dataclass(frozen=True)
class SimSpec:
  """Static settings of a simulation (shapes and code paths); one compiled program each."""
  population: str = "healthbench"  # focal.sim.population name
  num_prompts: int = 32            # P prompts, all visited every step
  num_heldout: int = 0             # held-out prompts, evaluated only (0: none)
  max_criteria: int = 16           # K criterion slots per prompt
  num_types: int = 32              # M latent response types (> K for make_world)
  num_features: int = 8            # F prompt features of the shared policy map
  group_size: int = 16             # G rollouts per prompt
  steps: int = 200                 # GRPO steps
  log_every: int = 10              # evaluate every this many steps
  aggregator: str = "weighted_sum"  # focal.aggregators name
  aggregator_hparams: tuple = ()   # ((name, value), ...) passed to aggregators.make
  estimator: str = "grpo"          # focal.advantages name
  estimator_hparams: tuple = ()    # ((name, value), ...) passed to make_estimator
  mu: int = _GRPO.mu               # AdamW steps per rollout batch (full batch each)
  eps_low: float = _GRPO.eps_low   # clip below 1
  eps_high: float = _GRPO.eps_high  # clip above 1
  beta: float = _GRPO.beta         # k3 KL weight to the initial policy
  grad_clip: float = _OPTIMIZER["grad_clip"]  # global-norm clip before AdamW
  weight_decay: float = _OPTIMIZER["weight_decay"]  # AdamW weight decay

  def __post_init__(self):
    if self.steps < 1 or self.log_every < 1 or self.steps % self.log_every:
      raise ValueError(f"steps={self.steps} must be a positive multiple of "
                       f"log_every={self.log_every}")
    if self.group_size < 2:
      raise ValueError(f"group_size={self.group_size} must be >= 2 for group advantages")
    if self.mu < 1:
      raise ValueError(f"mu={self.mu} must be >= 1")
    for name in ("num_prompts", "max_criteria", "num_features"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
    if self.num_heldout < 0:
      raise ValueError(f"num_heldout={self.num_heldout} must be >= 0")
    make_population(self.population)  # fails on an unknown name

  @property
  def num_logs(self) -> int:
    return self.steps // self.log_every


def _train_diagnostics(scores, valid, world: World, rewards, agg_m, adv_m, loss_m, num_cat):
  """Scalars of one training batch: what the trainer logs, plus weight per class."""
  weights = adv_m.get("weights", agg_m["weights"])
  observed = compute_metrics(scores, valid, world.rubric, num_cat, weights=weights)
  onehot = jax.nn.one_hot(world.classes, len(CLASS_NAMES)) * world.rubric.mask[..., None]
  keep = ("zero_variance_group_share", "static_reward_group_std", "zero_signal_share",
          "zero_signal_pressure", "saturated_share", "dead_share")
  # An estimator's own filtering diagnostics (GD²PO's), for the methods that have them.
  filtering = {k: adv_m[k] for k in ("conflict_frac", "dropped_frac", "group_keep_ratio")
               if k in adv_m}
  return {"reward_mean": jnp.mean(rewards), **{k: observed[k] for k in keep},
          "weight_share": jnp.mean(jnp.einsum("pk,pkc->pc", jnp.abs(weights), onehot), 0),
          "zero_variance_groups": adv_m["zero_variance_groups"],
          "loss": loss_m["loss"], "kl": loss_m["kl"], "clip_frac": loss_m["clip_frac"],
          **filtering}


def _step_randomness(key, num_prompts: int, group_size: int):
  """One threefry call per step: uniforms [P, G] for the types, 2 key words for the verdicts."""
  n = num_prompts * group_size
  bits = jax.random.bits(key, (n + 2,), jnp.uint32)
  u = (bits[:n] >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
  return u.reshape(num_prompts, group_size), bits[n:]


def _policy_update(spec: SimSpec, tx, world: World, knobs: Knobs, params, opt_state, logits,
                   types, adv):
  """`mu` AdamW steps on the clipped surrogate of the sampled types' log-probs.

  Each rollout is a one-token sequence whose token log-prob is log pi(type); the
  sampling policy (`logits`) is the old policy, the initial one the KL reference.
  Returns (params, opt_state, loss metrics averaged over the mu steps).
  """
  n = types.size
  old_logp = policy.type_logprobs(logits, types).reshape(n, 1)
  ref_logp = policy.type_logprobs(world.init_logits, types).reshape(n, 1)
  token_mask = jnp.ones((n, 1), bool)

  def loss_fn(p):
    logp = policy.type_logprobs(policy.policy_logits(p, world, knobs), types)
    return grpo.grpo_loss(logp.reshape(n, 1), old_logp, ref_logp, adv.reshape(n), token_mask,
                          eps_low=spec.eps_low, eps_high=spec.eps_high, beta=spec.beta,
                          max_len=1)

  def inner(state, _):
    p, o = state
    (_, loss_m), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, o = tx.update(grads, o, p)
    return (optax.apply_updates(p, updates), o), loss_m

  (params, opt_state), loss_m = jax.lax.scan(inner, (params, opt_state), None, length=spec.mu)
  return params, opt_state, jax.tree.map(jnp.mean, loss_m)


HPARAM_GROUPS = ("aggregator", "estimator")


def build_methods(spec: SimSpec, hparams: dict | None = None):
  """(aggregator, estimator) of `spec`, with `hparams` ({"<group>.<name>": value}) replacing
  the spec's values of those hyper-parameters (traced values stay traced)."""
  merged = {"aggregator": dict(spec.aggregator_hparams),
            "estimator": dict(spec.estimator_hparams)}
  for key, value in (hparams or {}).items():
    group, _, name = key.partition(".")
    if group not in HPARAM_GROUPS or not name:
      raise ValueError(f"lane hyper-parameter {key!r} must be 'aggregator.<name>' or "
                       "'estimator.<name>'")
    merged[group][name] = value
  return (aggregators.make(spec.aggregator, **merged["aggregator"]),
          make_estimator(spec.estimator, **merged["estimator"]))


def _step_fn(spec: SimSpec, tx, agg, estimate, world: World, knobs: Knobs, bounds,
             num_cat: int):
  """step((params, opt_state, agg_state), (step key, last)) -> (carry, diagnostics): one GRPO
  step on `world` (sample, judge, aggregate, estimate, update)."""
  def step(carry, inputs):
    (params, opt_state, agg_state), (step_key, last) = carry, inputs
    u, words = _step_randomness(step_key, spec.num_prompts, spec.group_size)
    logits = policy.policy_logits(params, world, knobs)
    types = policy.sample_types(u, logits)
    scores, valid = judge_lib.judge(words, bounds, types)
    rewards, agg_state, agg_m = agg.update(scores, valid, world.rubric, agg_state)
    adv, adv_m = estimate(rewards, scores, valid, world.rubric)
    params, opt_state, loss_m = _policy_update(spec, tx, world, knobs, params, opt_state,
                                               logits, types, adv)
    diagnose = lambda: _train_diagnostics(scores, valid, world, rewards, agg_m, adv_m, loss_m,
                                          num_cat)
    # Diagnostics cost about a step: only the last step of a log interval computes them
    # (`last` is the same for every lane, so under vmap this stays a branch).
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(diagnose))
    diag = jax.lax.cond(last, diagnose, lambda: zeros)
    return (params, opt_state, agg_state), diag

  return step


def _evaluate(spec: SimSpec, world: World, heldout: World | None, knobs: Knobs, num_cat: int,
              params):
  """The expected metrics of `params` on the training world (and the held-out one)."""
  logits = policy.policy_logits(params, world, knobs)
  out = {"eval": expected_metrics(logits, world, num_cat, spec.group_size)}
  if heldout is not None:
    logits = policy.heldout_logits(params, heldout, knobs)
    out["heldout"] = expected_metrics(logits, heldout, num_cat, spec.group_size)
  return out


def make_simulator(spec: SimSpec):
  """`simulate(seed, knobs, hparams=None) -> out` (module docstring); pure, jittable, vmappable.

  `simulate.simulate_world(world, key, knobs, hparams=None, heldout=None)` runs on a
  given world and, optionally, held-out world (tests build worlds by hand);
  `simulate.make_worlds(seed, knobs)` gives a seed's (run key, world, held-out world).
  """
  population = make_population(spec.population)
  build_methods(spec)  # a bad name or hyper-parameter fails here, before any tracing
  num_cat = population.num_categories

  def make_worlds(seed, knobs: Knobs):
    """(run key, training world, held-out world or None) of a seed."""
    world_key, run_key = jax.random.split(jax.random.key(seed))
    world = make_world(world_key, knobs, population, spec.num_prompts, spec.max_criteria,
                       spec.num_types, spec.num_features)
    heldout = None
    if spec.num_heldout:
      heldout = make_world(jax.random.fold_in(world_key, 1), knobs, population, spec.num_heldout,
                           spec.max_criteria, spec.num_types, spec.num_features,
                           skills=world.skills)
    return run_key, world, heldout

  def simulate(seed, knobs: Knobs, hparams: dict | None = None):
    run_key, world, heldout = make_worlds(seed, knobs)
    return simulate_world(world, run_key, knobs, hparams, heldout)

  def simulate_world(world: World, key, knobs: Knobs, hparams: dict | None = None,
                     heldout: World | None = None):
    agg, estimate = build_methods(spec, hparams)
    tx = make_optimizer(knobs.learning_rate, spec.grad_clip, spec.weight_decay)
    params = policy.init_params(spec.num_prompts, world.init_logits.shape[1], spec.num_features)
    bounds = judge_lib.verdict_bounds(raw_pass_prob(world), knobs.noise, knobs.invalid)

    step = _step_fn(spec, tx, agg, estimate, world, knobs, bounds, num_cat)
    evaluate = functools.partial(_evaluate, spec, world, heldout, knobs, num_cat)

    last = jnp.arange(spec.log_every) == spec.log_every - 1

    def interval(carry, keys):
      carry, diag = jax.lax.scan(step, carry, (keys, last))
      return carry, (jax.tree.map(lambda x: x[-1], diag), evaluate(carry[0]))

    carry = (params, tx.init(params), agg.init(spec.num_prompts, spec.max_criteria))
    keys = jax.random.split(key, spec.steps).reshape(spec.num_logs, spec.log_every)
    _, (train, evals) = jax.lax.scan(interval, carry, keys)
    first = evaluate(params)
    evals = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, evals)
    return {**evals, "train": train}

  simulate.simulate_world = simulate_world
  simulate.make_worlds = make_worlds
  return simulate


@functools.lru_cache(maxsize=32)
def compiled_lanes(spec: SimSpec):
  """jit(vmap(simulate)) over a lane axis; cached per spec, so a new lane count or new
  seeds never rebuild the Python function (jit still specialises on the lane count)."""
  return jax.jit(jax.vmap(make_simulator(spec)))


def run_lanes(spec: SimSpec, seeds, knobs: Knobs, hparams: dict | None = None) -> dict[str, Any]:
  """Runs L lanes (seeds [L] int, knobs of [L] arrays, hparams {key: [L]}) as one program."""
  seeds = jnp.asarray(seeds, jnp.uint32)
  if not hparams:
    return compiled_lanes(spec)(seeds, knobs)
  hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
  return compiled_lanes(spec)(seeds, knobs, hparams)


def lane_hparams_ok(spec: SimSpec, keys) -> dict[str, bool]:
  """{key: whether the hyper-parameter `key` ("<group>.<name>") can be a lane}: False when
  the aggregator or estimator branches on its value while tracing (it then decides the
  program, e.g. Focal's `ema` or `w_min`), so a grid runs one program per value instead."""
  knobs = jax.tree.map(lambda _: jax.ShapeDtypeStruct((), jnp.float32), Knobs(*Knobs._fields))
  ok = {}
  for key in keys:
    hparams = {key: jax.ShapeDtypeStruct((), jnp.float32)}
    try:
      jax.eval_shape(make_simulator(spec), jax.ShapeDtypeStruct((), jnp.uint32), knobs, hparams)
      ok[key] = True
    except jax.errors.ConcretizationTypeError:
      ok[key] = False
  return ok
