"""Checkpoint restore falls back past a damaged newest step to the newest intact one."""
import glob
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from focal.checkpoint import CORRUPT_SUFFIX, Checkpointer, CheckpointError

TX = optax.adam(1e-3)

# A truncated array leaves orbax's reader coroutines to fail after the restore gave up on
# that step; pytest reports them as unraisable. The restore itself has already moved on.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _state(step: int):
  params = {"w": jnp.arange(600.0) * step, "b": {"c": jnp.full((3, 4), float(step))}}
  return {"params": params, "opt": TX.init(params), "step": jnp.int32(step)}


@pytest.fixture
def saved(tmp_path):
  """Steps 1, 2, 3 written by the Checkpointer."""
  directory = str(tmp_path / "ckpt")
  ckpt = Checkpointer(directory, keep=3)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step), {"step": step})
  ckpt.close()
  return directory


def _largest_array_file(step_dir):
  files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _largest_array_file(step_dir)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 3)


def _write(path, text):
  with open(path, "w") as f:
    f.write(text)


DAMAGE = {
    "truncated array file": _truncate,
    "deleted manifest": lambda d: os.remove(os.path.join(d, "state", "manifest.ocdbt")),
    "bad JSON meta": lambda d: _write(os.path.join(d, "meta", "metadata"), '{"step": 3,'),
    "deleted meta": lambda d: os.remove(os.path.join(d, "meta", "metadata")),
    "deleted state": lambda d: shutil.rmtree(os.path.join(d, "state")),
    "empty step folder": lambda d: [shutil.rmtree(d), os.makedirs(d)],
}


def _equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_newest_step_falls_back_to_the_one_before(saved, damage):
  DAMAGE[damage](os.path.join(saved, "3"))
  ckpt = Checkpointer(saved, keep=3)
  with pytest.warns(RuntimeWarning) as record:
    state, meta = ckpt.restore(_state(0))
  said = [str(w.message) for w in record]
  assert re.search(r"checkpoint step 3 .* could not be restored \(\w+(Error|Exception)?: ", said[0])
  assert re.search(r"damaged checkpoint step 3 moved to .*3\.corrupt; restored the step", said[1])
  assert meta == {"step": 2}
  _equal(state, _state(2))
  # The damaged folder is kept for inspection, out of the way: step 3 can be saved again.
  assert os.path.isdir(os.path.join(saved, "3" + CORRUPT_SUFFIX))
  assert ckpt.all_steps() == [1, 2]
  assert ckpt.save(3, _state(33), {"step": 3})
  ckpt.close()
  state, meta = Checkpointer(saved).restore(_state(0))
  assert meta == {"step": 3}
  _equal(state, _state(33))


def test_two_damaged_steps_are_both_skipped_and_named(saved):
  _truncate(os.path.join(saved, "3"))
  _write(os.path.join(saved, "2", "meta", "metadata"), "not json")
  with pytest.warns(RuntimeWarning) as record:
    _, meta = Checkpointer(saved).restore(_state(0))
  assert meta == {"step": 1}
  text = " ".join(str(w.message) for w in record)
  assert "step 3" in text and "step 2" in text and "JSONDecodeError" in text
  assert sorted(os.listdir(saved)) == ["1", "2" + CORRUPT_SUFFIX, "3" + CORRUPT_SUFFIX]


def test_no_intact_step_is_a_clear_error_that_renames_nothing(saved):
  for step in (1, 2, 3):
    _write(os.path.join(saved, str(step), "meta", "metadata"), "{")
  with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError) as err:
    Checkpointer(saved).restore(_state(0))
  assert "no checkpoint under" in str(err.value)
  for step in (3, 2, 1):
    assert f"step {step}: JSONDecodeError" in str(err.value)
  assert sorted(os.listdir(saved)) == ["1", "2", "3"]


def test_a_target_that_does_not_match_renames_no_intact_step(saved):
  """A wrong target (another model's shapes) fails on every step: the run's steps stay."""
  wrong = _state(0)
  wrong["params"]["w"] = jnp.zeros(7)
  with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="step 3: .*step 1: "):
    Checkpointer(saved).restore(wrong)
  assert sorted(os.listdir(saved)) == ["1", "2", "3"]


def test_an_explicit_step_is_restored_or_fails_as_itself(saved):
  _truncate(os.path.join(saved, "3"))
  ckpt = Checkpointer(saved)
  _, meta = ckpt.restore(_state(0), step=1)
  assert meta == {"step": 1}
  with pytest.raises(Exception, match="reading array"):
    ckpt.restore(_state(0), step=3)
  assert os.path.isdir(os.path.join(saved, "3"))


def test_an_empty_directory_restores_nothing(tmp_path):
  assert Checkpointer(str(tmp_path / "none")).restore(_state(0)) is None


def test_keep_bounds_the_steps_kept_on_disk(tmp_path):
  directory = str(tmp_path / "ckpt")
  ckpt = Checkpointer(directory, keep=2, async_save=False)
  for step in (1, 2, 3, 4):
    ckpt.save(step, _state(step), {"step": step})
  ckpt.close()
  assert sorted(os.listdir(directory)) == ["3", "4"]
  assert Checkpointer(directory).all_steps() == [3, 4]


@pytest.mark.parametrize("cleanup", [False, True])
def test_a_save_killed_in_flight_never_hides_the_intact_steps_before_it(saved, cleanup):
  # What a killed async save leaves: step 4's folder under orbax's temporary name, half written
  # (a copy of step 3 with its array files cut short).
  tmp = os.path.join(saved, "4.orbax-checkpoint-tmp-1712345678901234")
  shutil.copytree(os.path.join(saved, "3"), tmp)
  _truncate(tmp)
  ckpt = Checkpointer(saved, keep=3, cleanup_tmp=cleanup)
  assert ckpt.all_steps() == [1, 2, 3]
  state, meta = ckpt.restore(_state(0))  # the newest intact step, not step 0 or nothing
  assert meta["step"] == 3
  _equal(state, _state(3))
  assert os.path.isdir(tmp) != cleanup  # only the trainer (cleanup_tmp) deletes the leftovers
  ckpt.save(4, _state(4), {"step": 4})  # and step 4 can be saved anew
  ckpt.close()
  assert Checkpointer(saved, keep=3).restore(_state(0))[1]["step"] == 4


def test_read_meta_reads_one_step_or_says_none(saved):
  ckpt = Checkpointer(saved, keep=3)
  assert ckpt.read_meta(2) == {"step": 2} and ckpt.read_meta(9) is None
  ckpt.close()


def _train_state(ref):
  from focal.iteration import TrainState
  params = {"w": jnp.arange(6.0), "b": jnp.ones((2, 3))}
  return TrainState(step=jnp.int32(4), params=params, opt_state=TX.init(params),
                    ref_params=ref, agg_state={"ema": jnp.zeros(3)}, rng=jax.random.key(0))


def test_a_checkpoint_with_a_reference_restores_into_a_run_that_keeps_none(tmp_path):
  """Runs with beta = 0 no longer store the reference; their older checkpoints hold one, and
  resume (the reference is skipped); a run without one restores as it was saved."""
  with_ref = _train_state({"w": jnp.full(6, 7.0), "b": jnp.zeros((2, 3))})
  ckpt = Checkpointer(str(tmp_path / "old"), async_save=False)
  ckpt.save(4, with_ref, {"data_position": 4})
  ckpt.close()
  target = _train_state(None).replace(step=jnp.int32(0))
  restored, meta = Checkpointer(str(tmp_path / "old")).restore(target)
  assert restored.ref_params is None and meta == {"data_position": 4}
  assert int(restored.step) == 4
  jax.tree.map(np.testing.assert_array_equal, restored.params, with_ref.params)
  jax.tree.map(np.testing.assert_array_equal, restored.opt_state, with_ref.opt_state)
  assert isinstance(restored.params["w"], jax.Array)

  ckpt = Checkpointer(str(tmp_path / "new"), async_save=False)
  ckpt.save(4, _train_state(None), {})
  ckpt.close()
  restored, _ = Checkpointer(str(tmp_path / "new")).restore(target)
  assert restored.ref_params is None and int(restored.step) == 4


def test_a_checkpoint_without_a_reference_is_a_clear_error_for_a_target_that_needs_one(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "c"), async_save=False)
  ckpt.save(4, _train_state(None), {})
  ckpt.close()
  with pytest.raises(ValueError, match="holds no ref_params"):
    Checkpointer(str(tmp_path / "c")).restore(_train_state(_train_state(None).params), step=4)


def test_a_dict_of_some_fields_restores_those_alone(tmp_path):
  """Evaluation's target: {"params": shapes} reads a TrainState checkpoint's parameters, and
  allocates nothing else (the optimizer's moments stay on disk)."""
  saved_state = _train_state({"w": jnp.full(6, 7.0), "b": jnp.zeros((2, 3))})
  ckpt = Checkpointer(str(tmp_path / "c"), async_save=False)
  ckpt.save(4, saved_state, {"step": 4})
  ckpt.close()
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), saved_state.params)
  before = {id(a) for a in jax.live_arrays()}
  restored, meta = Checkpointer(str(tmp_path / "c")).restore({"params": shapes}, step=4)
  assert set(restored) == {"params"} and meta == {"step": 4}
  jax.tree.map(np.testing.assert_array_equal, restored["params"], saved_state.params)
  new = [a for a in jax.live_arrays() if id(a) not in before]
  assert sum(a.nbytes for a in new) == sum(x.nbytes for x in jax.tree.leaves(restored))
