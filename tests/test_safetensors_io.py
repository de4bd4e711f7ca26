"""focal.models.safetensors_io: block reads against numpy slicing, and files exchanged with the
reference `safetensors` package in both directions."""
import json
import os
import struct

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from safetensors.numpy import load_file, save_file

from focal.models import safetensors_io as io

DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16]


@st.composite
def blocks(draw):
  """(array, block index, transpose, target dtype, chunk bytes)."""
  ndim = draw(st.integers(1, 3))
  shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
  dtype = draw(st.sampled_from(DTYPES))
  seed = draw(st.integers(0, 2 ** 16))
  arr = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)
  transpose = ndim == 2 and draw(st.booleans())
  view_shape = shape[::-1] if transpose else shape
  index = []
  for n in view_shape:
    start = draw(st.integers(0, n - 1))
    index.append(slice(start, draw(st.integers(start + 1, n))))
  target = draw(st.sampled_from(DTYPES))
  return arr, tuple(index), transpose, target, draw(st.integers(1, 64))


@settings(max_examples=150, deadline=None)
@given(blocks())
def test_read_block_equals_numpy_slicing(tmp_path_factory, case):
  arr, index, transpose, target, chunk = case
  path = str(tmp_path_factory.mktemp("st") / "x.safetensors")
  io.save_arrays(path, {"pad": np.zeros(3, np.float16), "x": arr})  # "x" starts unaligned
  info = io.read_header(path)["x"]
  got = io.read_tensor(info, index, transpose=transpose, dtype=target, chunk_bytes=chunk)
  view = arr.T if transpose else arr
  expected = view[index].astype(target)
  assert got.dtype == np.dtype(target) and got.flags.c_contiguous
  np.testing.assert_array_equal(got, expected)


def test_files_match_the_reference_package(tmp_path):
  arrays = {"f32": np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4),
            "f16": np.array([0.5, -1.25, 3.0], np.float16),
            "bf16": np.array([[1.0, -2.0], [0.15625, 7.5]], ml_dtypes.bfloat16),
            "i32": np.arange(5, dtype=np.int32), "scalar": np.array(2.5, np.float32)}
  ours = str(tmp_path / "ours.safetensors")
  io.save_arrays(ours, arrays, metadata={"format": "pt"})
  theirs = load_file(ours)
  assert sorted(theirs) == sorted(arrays)
  for name, arr in arrays.items():
    assert theirs[name].dtype == arr.dtype
    np.testing.assert_array_equal(theirs[name], arr)
  reference = str(tmp_path / "reference.safetensors")
  save_file(arrays, reference)
  read = {name: io.read_tensor(info) for name, info in io.read_header(reference).items()}
  for name, arr in arrays.items():
    assert read[name].dtype == arr.dtype
    np.testing.assert_array_equal(read[name], arr)


def test_write_is_deterministic_and_aligned(tmp_path):
  arrays = {"a": np.ones((2, 3), np.float32), "b": np.zeros(5, np.float16)}
  io.save_arrays(str(tmp_path / "1.safetensors"), arrays)
  io.save_arrays(str(tmp_path / "2.safetensors"), arrays)
  one, two = (tmp_path / "1.safetensors").read_bytes(), (tmp_path / "2.safetensors").read_bytes()
  assert one == two
  assert struct.unpack("<Q", one[:8])[0] % 8 == 0


def test_sharded_checkpoint_layout(tmp_path):
  arrays = {f"t{i}": np.full((i + 1, 100), i, np.float32) for i in range(6)}  # 400 B per row
  specs = {name: (a.dtype, a.shape) for name, a in arrays.items()}
  files = io.write_checkpoint(str(tmp_path), specs, arrays.__getitem__, max_shard_bytes=1600)
  with open(tmp_path / io.INDEX_FILE) as f:
    index = json.load(f)
  assert index["metadata"]["total_size"] == sum(a.nbytes for a in arrays.values())
  assert sorted(index["weight_map"]) == sorted(arrays)
  shards = sorted(set(index["weight_map"].values()))
  assert sorted(files) == sorted(shards + [io.INDEX_FILE])
  for shard in shards:  # at most the limit, unless one tensor alone exceeds it
    names = [n for n, s in index["weight_map"].items() if s == shard]
    size = sum(arrays[n].nbytes for n in names)
    assert size <= 1600 or len(names) == 1
  loaded = io.load_arrays(str(tmp_path))
  for name, arr in arrays.items():
    np.testing.assert_array_equal(loaded[name], arr)
  os.makedirs(tmp_path / "one")
  assert io.write_checkpoint(str(tmp_path / "one"), specs, arrays.__getitem__) == [io.SINGLE_FILE]


def test_corrupt_files_are_clear_errors(tmp_path):
  path = tmp_path / "x.safetensors"
  path.write_bytes(b"\x01\x02")
  with pytest.raises(ValueError, match="too short"):
    io.read_header(str(path))
  path.write_bytes(struct.pack("<Q", 1000) + b"{}")
  with pytest.raises(ValueError, match="exceeds the file size"):
    io.read_header(str(path))
  header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
  path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
  with pytest.raises(ValueError, match=r"'w' spans bytes \[0, 16\)"):
    io.read_header(str(path))
  header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}).encode()
  path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
  with pytest.raises(ValueError, match="unsupported dtype F8_E4M3"):
    io.read_header(str(path))
  with pytest.raises(FileNotFoundError, match="no model.safetensors or"):
    io.index_directory(str(tmp_path))
  (tmp_path / io.INDEX_FILE).write_text(json.dumps({"weight_map": {"w": "gone.safetensors"}}))
  with pytest.raises(FileNotFoundError, match="names shard gone.safetensors"):
    io.index_directory(str(tmp_path))
