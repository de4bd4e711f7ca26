"""Safetensors files read a block at a time and written streaming, with numpy only.

Format: an 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}} (offsets relative to the end of the
header), then the raw little-endian tensor bytes (so this module assumes a little-endian host,
as every JAX platform is). A checkpoint directory holds one
`model.safetensors` or several shards named by `model.safetensors.index.json` ({"weight_map":
{name: file}}).

Reading never maps or loads a whole file: `read_tensor` copies the rows a device shard needs,
through one buffer of at most `CHUNK_BYTES`, straight into an array of the target dtype. So the
host holds the result plus one chunk, whatever the checkpoint's size.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from typing import Callable, Mapping

import ml_dtypes
import numpy as np

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
CHUNK_BYTES = 16 << 20

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
          "BOOL": np.bool_}
_CODES = {np.dtype(t): code for code, t in DTYPES.items()}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """Where one tensor lives: `offset` is the absolute byte offset of its data in `path`."""
  path: str
  name: str
  dtype: np.dtype
  shape: tuple[int, ...]
  offset: int

  @property
  def nbytes(self) -> int:
    return math.prod(self.shape) * self.dtype.itemsize


def read_header(path: str) -> dict[str, TensorInfo]:
  """The tensors of one .safetensors file, checked against the file's size."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise ValueError(f"{path}: too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", head)
    if 8 + header_len > size:
      raise ValueError(f"{path}: header length {header_len} exceeds the file size {size}")
    header = json.loads(f.read(header_len))
  base = 8 + header_len
  tensors = {}
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    if entry["dtype"] not in DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {entry['dtype']}; "
                       f"supported: {', '.join(DTYPES)}")
    info = TensorInfo(path, name, np.dtype(DTYPES[entry["dtype"]]), tuple(entry["shape"]),
                      base + entry["data_offsets"][0])
    begin, end = entry["data_offsets"]
    if end - begin != info.nbytes or base + end > size:
      raise ValueError(f"{path}: tensor {name!r} spans bytes [{begin}, {end}), which does not "
                       f"fit shape {info.shape} of {entry['dtype']} in the file")
    tensors[name] = info
  return tensors


def index_directory(directory: str) -> dict[str, TensorInfo]:
  """Every tensor of a checkpoint directory: model.safetensors, or the shards of its index."""
  single = os.path.join(directory, SINGLE_FILE)
  if os.path.exists(single):
    return read_header(single)
  index_path = os.path.join(directory, INDEX_FILE)
  if not os.path.exists(index_path):
    raise FileNotFoundError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}")
  with open(index_path) as f:
    weight_map = json.load(f)["weight_map"]
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    path = os.path.join(directory, shard)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{index_path} names shard {shard}, which is missing")
    tensors.update(read_header(path))
  absent = sorted(set(weight_map) - set(tensors))
  if absent:
    raise ValueError(f"{index_path} maps {absent[:3]} to shards that do not hold them")
  return tensors


def _rows(index, shape) -> tuple[range, tuple]:
  """The row range of dimension 0 and the slices of the other dimensions, from a block index."""
  index = tuple(index) + (slice(None),) * (len(shape) - len(tuple(index)))
  spans = [range(*s.indices(n)) for s, n in zip(index, shape)]
  if any(r.step != 1 for r in spans):
    raise ValueError(f"strided blocks are not supported: {index}")
  return spans[0], tuple(slice(r.start, r.stop) for r in spans[1:])


def read_tensor(info: TensorInfo, index=(), *, transpose: bool = False, dtype=None,
                chunk_bytes: int = CHUNK_BYTES, out: np.ndarray | None = None) -> np.ndarray:
  """The block `index` (a tuple of unit-stride slices) of a tensor, cast to `dtype`.

  With `transpose`, the tensor is read as its 2-D transpose and `index` addresses that
  transpose (HF stores linear weights [out, in], the model [in, out]). The file is read in
  row chunks of at most `chunk_bytes`, so only the block itself is ever fully in memory.
  out: an array of the block's shape to read into (its dtype is the target dtype), e.g. one
  layer's slot of a stacked parameter; returned.
  """
  dtype = np.dtype(out.dtype if out is not None else (dtype or info.dtype))
  if not info.shape:  # a scalar
    with open(info.path, "rb") as f:
      f.seek(info.offset)
      return np.frombuffer(f.read(info.dtype.itemsize), info.dtype).astype(dtype).reshape(())
  if transpose and len(info.shape) != 2:
    raise ValueError(f"{info.name}: only 2-D tensors can be read transposed, shape {info.shape}")
  file_index = tuple(index)[::-1] if transpose else tuple(index)
  rows, rest = _rows(file_index, info.shape)
  block_shape = (len(rows),) + tuple(s.stop - s.start for s in rest)
  block_shape = block_shape[::-1] if transpose else block_shape
  if out is None:
    out = np.empty(block_shape, dtype)
  elif out.shape != block_shape:
    raise ValueError(f"{info.name}: out has shape {out.shape}, the block {block_shape}")
  if out.size == 0:
    return out
  # Without a cast, copy raw bits: numpy moves (and transposes) plain integers ~3x faster than
  # ml_dtypes' bfloat16.
  file_dtype, target = info.dtype, out
  if dtype == info.dtype:
    file_dtype = np.dtype(f"u{dtype.itemsize}")
    target = out.view(file_dtype)
  row_bytes = info.nbytes // info.shape[0]
  per_chunk = max(1, chunk_bytes // max(row_bytes, 1))
  buffer = np.empty(min(per_chunk, len(rows)) * row_bytes, np.uint8)
  with open(info.path, "rb") as f:
    for start in range(rows.start, rows.stop, per_chunk):
      n = min(per_chunk, rows.stop - start)
      f.seek(info.offset + start * row_bytes)
      if f.readinto(memoryview(buffer)[:n * row_bytes]) != n * row_bytes:
        raise ValueError(f"{info.path}: tensor {info.name!r} is truncated")
      chunk = buffer[:n * row_bytes].view(file_dtype).reshape((n,) + info.shape[1:])
      piece = chunk[(slice(None),) + rest]
      at = start - rows.start
      if transpose:
        target[:, at:at + n] = piece.T
      else:
        target[at:at + n] = piece
  return out


def load_arrays(directory: str) -> dict[str, np.ndarray]:
  """Every tensor of a checkpoint directory as a numpy array of its stored dtype (small ones)."""
  return {name: read_tensor(info) for name, info in index_directory(directory).items()}


def _header_bytes(specs: Mapping[str, tuple], metadata: Mapping[str, str] | None) -> bytes:
  header: dict = {"__metadata__": dict(metadata)} if metadata else {}
  offset = 0
  for name, (dtype, shape) in specs.items():
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    header[name] = {"dtype": _code(dtype, name), "shape": list(shape),
                    "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  raw = json.dumps(header, separators=(",", ":")).encode()
  raw += b" " * (-len(raw) % 8)  # keeps the data 8-byte aligned, as the reference writer does
  return struct.pack("<Q", len(raw)) + raw


def _code(dtype, name: str) -> str:
  if np.dtype(dtype) not in _CODES:
    raise ValueError(f"tensor {name!r}: dtype {np.dtype(dtype)} has no safetensors code")
  return _CODES[np.dtype(dtype)]


def write_safetensors(path: str, specs: Mapping[str, tuple], fetch: Callable[[str], np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
  """Write tensors one at a time: specs {name: (dtype, shape)}; fetch(name) gives its array.

  Only one tensor is in host memory at once. Bytes are deterministic for the same inputs.
  """
  with open(path, "wb") as f:
    f.write(_header_bytes(specs, metadata))
    for name, (dtype, shape) in specs.items():
      arr = np.asarray(fetch(name), dtype=dtype)
      if arr.shape != tuple(shape):
        raise ValueError(f"tensor {name!r}: fetched shape {arr.shape}, declared {tuple(shape)}")
      f.write(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # no second copy


def save_arrays(path: str, arrays: Mapping[str, np.ndarray],
                metadata: Mapping[str, str] | None = None) -> None:
  """Write a dict of numpy arrays as one .safetensors file."""
  specs = {name: (a.dtype, a.shape) for name, a in arrays.items()}
  write_safetensors(path, specs, arrays.__getitem__, metadata)


def write_checkpoint(directory: str, specs: Mapping[str, tuple],
                     fetch: Callable[[str], np.ndarray], *, max_shard_bytes: int = 5 << 30,
                     metadata: Mapping[str, str] | None = None) -> list[str]:
  """model.safetensors, or shards of at most `max_shard_bytes` plus their index; returns files.

  Tensors keep their order; a tensor larger than the limit gets a shard of its own.
  """
  shards: list[dict] = [{}]
  size = 0
  for name, (dtype, shape) in specs.items():
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if shards[-1] and size + nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = (dtype, shape)
    size += nbytes
  if len(shards) == 1:
    write_safetensors(os.path.join(directory, SINGLE_FILE), specs, fetch, metadata)
    return [SINGLE_FILE]
  names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
  for file, shard in zip(names, shards):
    write_safetensors(os.path.join(directory, file), shard, fetch, metadata)
  total = sum(math.prod(s) * np.dtype(d).itemsize for d, s in specs.values())
  index = {"metadata": {"total_size": total},
           "weight_map": {name: file for file, shard in zip(names, shards) for name in shard}}
  with open(os.path.join(directory, INDEX_FILE), "w") as f:
    json.dump(index, f, indent=2)
  return names + [INDEX_FILE]
