"""The non-finite guard: found inside the jitted step, reported in its metrics, stopped or skipped."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from focal import aggregators, nonfinite
from focal.models.transformer import ModelConfig, init_model
from focal.batch import Rollouts
from focal.iteration import (GRPOSettings, init_train_state, make_engine, make_optimizer)
from test_iteration import EOS, PAD, make_batch

CFG = ModelConfig(vocab_size=260, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8,
                  d_ff=32, max_seq_len=16)
G, L = 4, 6


@functools.lru_cache(maxsize=None)  # one compilation per (mode, learning rate)
def _learn(mode: str, learning_rate: float = 1e-3):
  """A jitted learn_step of a one-layer policy under POW3R (its state is a per-prompt table)."""
  graphdef, params = init_model(CFG, jax.random.key(0))
  # optax directly: make_optimizer (and so a config) refuses a NaN learning rate up front.
  # The rate lives in the optimizer state, not in the program: every rate compiles to the
  # same step, so the NaN-rate engines reuse the finite ones' executables (the XLA cache).
  tx = optax.chain(optax.clip_by_global_norm(0.5),
                   optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate))
  agg = aggregators.make("pow3r")
  settings = GRPOSettings(group_size=G, max_new_tokens=L, eos_id=EOS, pad_id=PAD, nonfinite=mode)
  state = init_train_state(params, tx, agg, num_prompts=8, max_criteria=3, rng=jax.random.key(1))
  return state, jax.jit(make_engine(graphdef, tx, agg, settings).learn_step)


def _inputs(poison: float | None = None):
  """A batch of 3 prompts, fixed rollouts, and contrastive verdicts (one valid one poisoned)."""
  batch = make_batch()
  rng = np.random.default_rng(0)
  rollouts = Rollouts(jnp.asarray(rng.integers(97, 123, (3 * G, L)), jnp.int32),
                      jnp.ones((3 * G, L), bool))
  scores = (rng.random((3 * G, 3)) < 0.5).astype(np.float32)
  if poison is not None:
    scores[5, 1] = poison
  return batch, rollouts, scores, np.ones(scores.shape, bool)


def _equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _all_finite(tree) -> bool:
  return all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(tree))


def test_code_names_the_first_nonfinite_quantity_in_order():
  ok = jnp.ones((2, 3))
  code = lambda **bad: int(nonfinite.nonfinite_code(
      bad.get("reward", ok), bad.get("advantage", ok), bad.get("loss", ok[0]),
      bad.get("grad", ok[0]), bad.get("params", {"w": ok, "step": jnp.arange(3)})))
  assert code() == 0
  nan = ok.at[1, 2].set(jnp.nan)
  assert code(reward=nan, grad=nan[1]) == 1
  assert code(advantage=nan) == 2
  assert code(loss=nan[1], params={"w": nan}) == 3
  assert code(grad=ok[0].at[0].set(jnp.inf)) == 4
  assert code(params={"w": ok.at[0, 0].set(-jnp.inf)}) == 5


def test_check_finite_raises_naming_step_and_quantity():
  finite = {"loss": np.float32(0.5), "nonfinite": np.float32(0.0), "weights": np.ones(3)}
  assert nonfinite.check_finite(finite, 7) is False
  bad = {"loss": np.float32(np.nan), "kl": np.float32(0.1), "nonfinite": np.float32(3.0)}
  with pytest.raises(nonfinite.NonFiniteError, match=r"step 7: non-finite loss .*metrics: loss"):
    nonfinite.check_finite(bad, 7)
  with pytest.warns(RuntimeWarning, match="step 9: non-finite loss.*skipped"):
    assert nonfinite.check_finite(bad, 9, "skip_update") is True
  # A metric computed outside the guarded quantities still stops the run.
  with pytest.raises(nonfinite.NonFiniteError, match="step 2: non-finite metric kl"):
    nonfinite.check_finite({"kl": np.float32(np.inf), "nonfinite": np.float32(0.0)}, 2)
  with pytest.raises(ValueError, match="nonfinite must be one of"):
    GRPOSettings(nonfinite="ignore")


@pytest.mark.parametrize("mode", nonfinite.MODES)
def test_a_nan_score_is_caught_in_the_step(mode):
  state, learn = _learn(mode)
  new, m = learn(state, *_inputs(poison=np.nan))
  assert int(m["nonfinite"]) == 1 + nonfinite.QUANTITIES.index("reward")
  assert int(new.step) == 1
  if mode == "stop":
    # The step is left as computed: its parameters are non-finite, so every later
    # step reports it too until the host reads the flag.
    assert not _all_finite(new.params)
    with pytest.raises(nonfinite.NonFiniteError, match="step 1: non-finite reward"):
      nonfinite.check_finite(m, 1, mode)
  else:
    _equal((new.params, new.opt_state, new.agg_state),
           (state.params, state.opt_state, state.agg_state))
    assert not np.array_equal(jax.random.key_data(new.rng), jax.random.key_data(state.rng))
    # The next, finite step trains from the kept state.
    after, m2 = learn(new, *_inputs())
    assert int(m2["nonfinite"]) == 0 and _all_finite(after.params)
    assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(after.params),
                                                       jax.tree.leaves(state.params)))


@pytest.mark.parametrize("mode", nonfinite.MODES)
def test_a_nan_learning_rate_never_yields_finite_looking_parameters(mode):
  """The issue's case: a NaN learning rate trained, checkpointed NaN parameters and exited 0.
  A config cannot carry one any more (make_optimizer refuses it); an optimizer built by hand
  still meets the in-step guard."""
  with pytest.raises(ValueError, match="optimizer.learning_rate must be a finite number > 0"):
    make_optimizer(float("nan"))
  state, learn = _learn(mode, learning_rate=float("nan"))
  new, m = learn(state, *_inputs())
  assert int(m["nonfinite"]) == 1 + nonfinite.QUANTITIES.index("params")
  assert np.isfinite(float(m["loss"])) and np.isfinite(float(m["grad_norm"]))
  if mode == "stop":
    with pytest.raises(nonfinite.NonFiniteError, match="non-finite params"):
      nonfinite.check_finite(m, 1, mode)
  else:
    _equal(new.params, state.params)


@pytest.mark.default_codegen  # stop's and skip_update's programs, compared bit for bit
def test_finite_steps_are_unchanged_by_the_mode():
  """skip_update is the identity on a finite step: same parameters as stop, bit for bit."""
  (s_stop, stop), (s_skip, skip) = _learn("stop"), _learn("skip_update")
  inputs = _inputs()
  a, ma = stop(s_stop, *inputs)
  b, mb = skip(s_skip, *inputs)
  assert int(ma["nonfinite"]) == int(mb["nonfinite"]) == 0
  _equal((a.params, a.opt_state, a.agg_state), (b.params, b.opt_state, b.agg_state))
