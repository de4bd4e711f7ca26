"""The contract every registered aggregator and advantage estimator keeps, and the config blocks
`focal.components` generates from their factories."""
import functools
import json
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from configs import base
from focal import advantages, aggregators, components
from focal.advantages import base as adv_base
from focal.aggregators import base as agg_base, prompt_state
from focal.rubric import RubricBatch

B, G, K, PAD = 3, 4, 5, 3
NUM_PROMPTS = 6


def _rubric(rng, k=K, pad=0):
  """A random [B, k + pad] rubric: signed weights, three categories, some disabled slots."""
  weights = rng.integers(1, 6, (B, k)) * rng.choice([1, 1, 1, -1], (B, k))
  mask = rng.random((B, k)) < 0.8
  mask[:, 0] = True
  weights[:, 0] = abs(weights[:, 0])  # every prompt keeps positive mass
  cats = rng.integers(0, 3, (B, k))
  req = rng.random((B, k)) < 0.4
  pad_w = lambda a, fill: np.concatenate([a, np.full((B, pad), fill, a.dtype)], 1)
  return RubricBatch.from_arrays(pad_w(weights.astype(np.float32), 0.0), pad_w(cats, 0),
                                 pad_w(req, False), pad_w(mask, False),
                                 rng.choice(NUM_PROMPTS, B, replace=False))


def _verdicts(rng, k=K):
  scores = (rng.random((B, G, k)) < 0.5).astype(np.float32)
  valid = rng.random((B, G, k)) < 0.9
  return jnp.asarray(scores), jnp.asarray(valid)


def _call_aggregator(agg, scores, valid, rubric, state):
  rewards, state, _ = agg.update(scores, valid, rubric, state)
  return rewards, state


def _call_estimator(est, scores, valid, rubric, rewards):
  adv, _ = est(rewards, scores, valid, rubric)
  return adv


def _rewards(rng):
  return jnp.asarray(rng.random((B, G)).astype(np.float32))


def _close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


AGGREGATORS = aggregators.registered()
ESTIMATORS = advantages.registered_estimators()


@functools.lru_cache(maxsize=None)
def _jitted_aggregator(name):
  """The registered aggregator with its update jitted once per session: the tests below share
  its compilations (shape [B, G, K] and the padded [B, G, K + PAD])."""
  agg = aggregators.make(name)
  return aggregators.Aggregator(agg.init, jax.jit(agg.update))


@functools.lru_cache(maxsize=None)
def _jitted_estimator(name):
  est = advantages.make_estimator(name)
  return jax.jit(lambda *a: _call_estimator(est, *a))


def _two_visits(agg, rubric, verdicts):
  """Rewards of two successive visits (adaptive state must carry over) and the final state."""
  state = agg.init(NUM_PROMPTS, rubric.max_criteria)
  out = []
  for scores, valid in verdicts:
    rewards, state = _call_aggregator(agg, scores, valid, rubric, state)
    out.append(rewards)
  return out, state


@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregator_jit_equals_eager_and_vmap_equals_loop(name):
  rng = np.random.default_rng(0)
  agg = aggregators.make(name)
  rubric = _rubric(rng)
  verdicts = [_verdicts(rng), _verdicts(rng)]
  eager = _two_visits(agg, rubric, verdicts)
  jitted_agg = _jitted_aggregator(name)
  _close(eager, _two_visits(jitted_agg, rubric, verdicts))
  # Three seeds' batches stacked on a leading axis, one vmapped update, against a loop. Both
  # sides jitted (the loop reuses the update just checked against eager): op-by-op dispatch
  # of the vmapped and looped updates was most of this test's time and checks nothing more.
  batches = [(_verdicts(rng), _rubric(rng)) for _ in range(3)]
  state = agg.init(NUM_PROMPTS, K)
  stack = lambda *xs: jax.tree.map(lambda *x: jnp.stack(x), *xs)
  vm = jax.jit(jax.vmap(lambda s, v, r, st: _call_aggregator(agg, s, v, r, st)))(
      *stack(*[(s, v, r, state) for (s, v), r in batches]))
  for i, ((s, v), r) in enumerate(batches):
    _close(jax.tree.map(lambda x: x[i], vm), _call_aggregator(jitted_agg, s, v, r, state))


@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregator_ignores_padded_criterion_slots(name):
  """Slots with mask=False change nothing, whatever their verdicts say."""
  rng = np.random.default_rng(1)
  agg = _jitted_aggregator(name)  # jit == eager is checked above; this is about padding
  rubric = _rubric(np.random.default_rng(2))
  padded = _rubric(np.random.default_rng(2), pad=PAD)
  verdicts = [_verdicts(rng), _verdicts(rng)]
  noise = lambda a, fill: jnp.concatenate([a, fill((B, G, PAD))], -1)
  padded_verdicts = [(noise(s, lambda shape: jnp.asarray(rng.random(shape) < 0.5, jnp.float32)),
                      noise(v, lambda shape: jnp.asarray(rng.random(shape) < 0.5)))
                     for s, v in verdicts]
  (rewards, state) = _two_visits(agg, rubric, verdicts)
  (rewards_p, state_p) = _two_visits(agg, padded, padded_verdicts)
  _close(rewards, rewards_p)
  # Adaptive per-(prompt, criterion) tables keep their real slots' values.
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(state_p)):
    if x.ndim == 2:
      _close(x, y[:, :K])


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimator_jit_equals_eager_vmap_equals_loop_and_ignores_padding(name):
  rng = np.random.default_rng(3)
  est = advantages.make_estimator(name)
  rubric = _rubric(np.random.default_rng(4))
  scores, valid = _verdicts(rng)
  rewards = _rewards(rng)
  eager = _call_estimator(est, scores, valid, rubric, rewards)
  jitted = _jitted_estimator(name)
  _close(eager, jitted(scores, valid, rubric, rewards))
  # vmap == loop and padding, both jitted (the loop reuses the function just checked against
  # eager): op-by-op dispatch there checked nothing more and was most of the time.
  batches = [(*_verdicts(rng), _rubric(rng), _rewards(rng)) for _ in range(3)]
  stack = lambda *xs: jax.tree.map(lambda *x: jnp.stack(x), *xs)
  vm = jax.jit(jax.vmap(lambda *a: _call_estimator(est, *a)))(*stack(*batches))
  for i, args in enumerate(batches):
    _close(vm[i], jitted(*args))
  padded = _rubric(np.random.default_rng(4), pad=PAD)
  pad = lambda a, value: jnp.concatenate([a, jnp.full((B, G, PAD), value, a.dtype)], -1)
  _close(eager, jitted(pad(scores, 1.0), pad(valid, True), padded, rewards))


def _registry_cases():
  return ([("aggregator", n, agg_base._AGGREGATORS) for n in AGGREGATORS]
          + [("advantage", n, adv_base._ESTIMATORS) for n in ESTIMATORS])


def _changed(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, str):
    return "signed" if value == "flip" else value + "_other"
  if isinstance(value, int):
    return value + 1
  return value * 0.5 + 0.25


@pytest.mark.parametrize("section, name, registry", _registry_cases())
def test_config_block_round_trips_and_every_field_reaches_the_factory(section, name, registry,
                                                                       monkeypatch):
  config = base.get_config()
  config[section].name = name
  block = config[section][name]
  defaults = registry.defaults(name)
  assert block.to_dict() == defaults or section == "aggregator" and name == "focal"
  # A saved config (config.json) restores the same block.
  restored = ml_collections.ConfigDict(json.loads(config.to_json_best_effort()))
  assert restored[section][name].to_dict() == block.to_dict()
  received = {}
  original = registry.factory(name)

  @functools.wraps(original)  # keeps the signature the defaults are read from
  def recording(**hparams):
    received.clear()
    received.update(hparams)
    return original(**hparams)

  monkeypatch.setitem(registry._factories, name, recording)
  build = components.make_aggregator if section == "aggregator" else components.estimator_spec
  build(config)
  assert received == block.to_dict()
  for field, value in defaults.items():
    changed = config.copy_and_resolve_references()
    changed[section][name][field] = _changed(value)
    try:
      build(changed)
    except ValueError:
      pass  # an out-of-range value is refused by the factory, after it received it
    assert received[field] == _changed(value), field


@pytest.mark.parametrize("section, name, registry", _registry_cases())
def test_every_hyper_parameter_is_documented_in_its_factory(section, name, registry):
  doc = registry.factory(name).__doc__ or ""
  args = doc.split("Args:", 1)[-1] if "Args:" in doc else ""
  for field in registry.defaults(name):
    assert re.search(rf"\b{field}\b[^:\n]*:", args), f"{section} {name}: {field} undocumented"


def test_a_block_or_field_missing_from_a_saved_config_is_refused_naming_the_migration():
  config = base.get_config()
  old = ml_collections.ConfigDict(json.loads(config.to_json_best_effort()))
  old.advantage = ml_collections.ConfigDict({"name": "sa_mrpo"})  # before per-estimator blocks
  with pytest.raises(ValueError, match=r"'sa_mrpo' block lacks \['eps', .*"
                                       r"python tools/migrate_results.py RUN_DIR"):
    components.estimator_spec(old)
  del old.aggregator.pow3r["min_valid_frac"]
  old.aggregator.name = "pow3r"
  with pytest.raises(ValueError, match=r"'pow3r' block lacks \['min_valid_frac'\]"):
    components.make_aggregator(old)


def test_an_evaluation_judge_that_the_grader_kind_never_reads_is_refused():
  """eval.judge was validated and then ignored under grader.kind=programmatic: held-out scores
  came from the training grader while the config named a judge."""
  c = base.get_config()
  assert c.grader.kind == "programmatic"
  components.validate(c)
  c.eval.judge.base_url, c.eval.judge.model = "http://127.0.0.1:1/v1", "judge"
  with pytest.raises(ValueError, match=r"eval\.judge\.base_url is set, but "
                                       r"grader\.kind=programmatic .*grader\.kind=judge does"):
    components.validate(c)


def test_grpo_and_optimizer_defaults_live_in_one_place():
  """The config's grpo and optimizer blocks are GRPOSettings' and make_optimizer's own
  defaults: configs/base.py restates none of them."""
  c = base.get_config()
  settings = components.grpo_settings(c, eos_id=7, pad_id=3)
  assert (settings.max_new_tokens, settings.eos_id, settings.pad_id) == (40, 7, 3)
  assert c.grpo == components.grpo_config()
  assert c.optimizer == components.optimizer_config() and c.optimizer.learning_rate == 3e-4


def test_unknown_names_fail_listing_the_registered_ones():
  c = base.get_config()
  c.advantage.name = "ppo"
  with pytest.raises(ValueError, match="unknown advantage estimator 'ppo'.*sa_mrpo"):
    components.validate(c)


# ----------------------------------------------------------------------------
# Reliability: what a slot without a verdict holds never matters; tables are checked.
# ----------------------------------------------------------------------------

POISONS = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -7.0])


@functools.lru_cache(maxsize=None)
def _component(kind: str, name: str):
  """`f(scores, valid, rubric, rewards)` -> the component's whole output.

  Aggregators run jitted (one compilation, many examples). Estimators run eagerly: they are
  cheap, and under jit XLA happens to rewrite `x * float(mask)` into a select, which hides a
  0 x NaN that eager execution (or another backend) would produce."""
  if kind == "aggregator":
    agg = _jitted_aggregator(name)
    return lambda s, v, r, _: agg.update(s, v, r, agg.init(NUM_PROMPTS, K + PAD))
  estimate = advantages.make_estimator(name)
  return lambda s, v, r, rewards: estimate(rewards, s, v, r)


def _poisoned_verdicts(seed: int, poison: float):
  """A padded rubric, verdicts with every slot lacking a usable one set to `poison`, and the
  same verdicts with those slots at 0 (one rollout has no verdict at all)."""
  rng = np.random.default_rng(seed)
  rubric = _rubric(rng, pad=PAD)
  scores, valid = _verdicts(rng, K + PAD)
  valid = valid.at[0, 1].set(False)
  usable = agg_base.present(valid, rubric)
  return (rubric, valid, jnp.where(usable, scores, poison), jnp.where(usable, scores, 0.0))


@pytest.mark.parametrize("kind, name", [("aggregator", n) for n in AGGREGATORS]
                         + [("advantage", n) for n in ESTIMATORS])
@given(seed=st.integers(0, 2**31 - 1), poison=POISONS)
@settings(max_examples=12, deadline=None)
def test_nothing_without_a_verdict_reaches_rewards_or_advantages(kind, name, seed, poison):
  """NaN, inf or any value in an invalid or padded slot (and, for an estimator, in the reward of
  the rollout without a verdict) leaves every output bit-identical to 0 there."""
  call = _component(kind, name)
  rubric, valid, poisoned, clean = _poisoned_verdicts(seed, poison)
  rewards = _rewards(np.random.default_rng(seed))
  out_p = call(poisoned, valid, rubric, rewards.at[0, 1].set(poison))
  out_c = call(clean, valid, rubric, rewards.at[0, 1].set(0.0))
  jax.tree.map(np.testing.assert_array_equal, out_p, out_c)  # rewards/advantages, state, metrics
  assert np.all(np.isfinite(out_p[0]))


@pytest.mark.parametrize("name", AGGREGATORS)
def test_a_prompt_id_past_the_state_table_is_an_error(name):
  agg = aggregators.make(name)
  rubric = _rubric(np.random.default_rng(5))
  small = agg.init(int(np.max(rubric.prompt_ids)), K)  # one row short of the largest id
  scores, valid = _verdicts(np.random.default_rng(6))
  if prompt_state.table_rows(small) is None:  # stateless: no table to overflow
    prompt_state.check_prompt_ids(small, rubric.prompt_ids)
    agg.update(scores, valid, rubric, small)
    return
  message = rf"prompt id {int(np.max(rubric.prompt_ids))} is outside .* table of"
  with pytest.raises(ValueError, match=message):
    prompt_state.check_prompt_ids(small, rubric.prompt_ids)
  with pytest.raises(ValueError, match=message):  # eager use checks on first use
    agg.update(scores, valid, rubric, small)
  prompt_state.check_prompt_ids(agg.init(NUM_PROMPTS, K), rubric.prompt_ids)


def test_micro_batch_sizes_are_checked_against_the_batch_and_bf16_weights_warn():
  c = base.get_config("tiny")  # 4 prompts x 4 rollouts
  c.grpo.num_minibatches = 2
  c.grpo.micro_batch_size = 3
  with pytest.raises(ValueError, match="micro_batch_size=3 does not divide the 8 rollouts of a "
                                       "mini-batch"):
    components.validate(c)
  c.grpo.micro_batch_size, c.grpo.rollout_micro_batch_size = 4, 5
  with pytest.raises(ValueError, match="rollout_micro_batch_size=5 does not divide the 16"):
    components.validate(c)
  c.grpo.rollout_micro_batch_size = 8
  components.validate(c)
  c.model.param_dtype, c.optimizer.learning_rate = "bfloat16", 1e-6
  with pytest.warns(UserWarning, match="updates round away in bfloat16 weights"):
    components.validate(c)
  c.mesh.ref_memory_kind = "disk"
  with pytest.raises(ValueError, match="ref_memory_kind must be one of"):
    components.validate(c)
