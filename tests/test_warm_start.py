"""The warm start's on-disk cache: reused only for the exact data and initial parameters."""
import os

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from configs import base
from focal import components
from focal.warm_start import cache_file, cache_key, fingerprint

_arrays = hnp.arrays(np.int32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
                     elements=st.integers(-50, 50))


@settings(max_examples=50, deadline=None)
@given(a=_arrays, index=st.integers(0, 10_000), delta=st.integers(1, 5))
def test_fingerprint_sees_every_value_shape_and_dtype(a, index, delta):
  b = a.copy()
  assert fingerprint((a, b)) == fingerprint((a.copy(), b.copy()))
  flat = b.reshape(-1)
  flat[index % flat.size] += delta
  assert fingerprint((a, b)) != fingerprint((a, a))
  assert fingerprint(a) != fingerprint(a[..., None])  # same bytes, other shape
  assert fingerprint(a) != fingerprint(a.astype(np.uint32))  # same bytes, other dtype


def _cached_build(cache_dir, **kwargs):
  c = base.get_config("tiny")
  c.warm_start.cache_dir = str(cache_dir)
  return components.build(c, progress=False, **kwargs)


def _params(setup):
  return [np.asarray(x) for x in jax.tree.leaves(setup.state.params)]


def test_cached_warm_start_is_reused_only_for_the_same_sequences(tmp_path):
  first = _cached_build(tmp_path)
  (path,) = [os.path.join(tmp_path, f) for f in os.listdir(tmp_path)]
  written = os.stat(path).st_mtime_ns
  again = _cached_build(tmp_path)
  assert os.listdir(tmp_path) == [os.path.basename(path)]
  assert os.stat(path).st_mtime_ns == written  # read, not recomputed
  np.testing.assert_array_equal(first.warm_start_losses, again.warm_start_losses)
  for x, y in zip(_params(first), _params(again)):
    np.testing.assert_array_equal(x, y)

  # Prompts padded wider (as for a stacked seed axis) are other training sequences,
  # so the same config fields must not pick up the narrower run's result.
  width = first.source.train_prompts[0].shape[1]
  wider = _cached_build(tmp_path, width=width + 2)
  assert wider.source.train_prompts[0].shape[1] == width + 2
  assert len(os.listdir(tmp_path)) == 2


def test_a_moved_cache_still_hits(tmp_path):
  """The key leaves the directory out: a cache copied elsewhere is reused, not recomputed
  (a recomputed warm start on another CPU is another policy)."""
  first = _cached_build(tmp_path / "a")
  (name,) = os.listdir(tmp_path / "a")
  os.makedirs(tmp_path / "b")
  os.replace(tmp_path / "a" / name, tmp_path / "b" / name)
  written = os.stat(tmp_path / "b" / name).st_mtime_ns
  moved = _cached_build(tmp_path / "b")
  assert os.listdir(tmp_path / "b") == [name]
  assert os.stat(tmp_path / "b" / name).st_mtime_ns == written
  for x, y in zip(_params(first), _params(moved)):
    np.testing.assert_array_equal(x, y)


def test_a_file_under_the_older_key_is_renamed_not_recomputed(tmp_path):
  setting = dict(task="caps", model="base", seed=1, steps=300, sequences="0123456789abcdef")
  # Before the key left the directory out, it hashed `cache_dir` with the rest of the setting.
  legacy = tmp_path / f"{cache_key(**setting, cache_dir=str(tmp_path))}.msgpack"
  legacy.write_bytes(b"params")
  path = cache_file(str(tmp_path), **setting)
  assert os.path.basename(path) == f"{cache_key(**setting)}.msgpack"
  assert open(path, "rb").read() == b"params" and not legacy.exists()
  assert cache_file(str(tmp_path), **setting) == path  # idempotent
  # A file under the new key wins; an older one beside it is left alone.
  legacy.write_bytes(b"older")
  assert open(cache_file(str(tmp_path), **setting), "rb").read() == b"params"
  assert legacy.exists()
  assert cache_file("", **setting) is None
