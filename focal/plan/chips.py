"""TPU chips and slices: their published peaks, and compile-only devices for a slice's topology.

Per chip, from Google Cloud's TPU pages (each chip's "key specifications" table):

| chip | HBM | peak bf16 | HBM bandwidth | source |
|---|---|---|---|---|
| v4  | 32 GiB | 275 TFLOP/s | 1200 GB/s | https://cloud.google.com/tpu/docs/v4 |
| v5e | 16 GiB | 197 TFLOP/s |  819 GB/s | https://cloud.google.com/tpu/docs/v5e |
| v5p | 95 GiB | 459 TFLOP/s | 2765 GB/s | https://cloud.google.com/tpu/docs/v5p |
| v6e | 32 GiB | 918 TFLOP/s | 1638 GB/s | https://cloud.google.com/tpu/docs/v6e |

The v5e, v5p and v6e pages write the capacity as "16 GB", "95GB", "32 GB"; JAX reports those
chips' HBM in GiB (a v5p's `memory_stats()` limit is ~95.7 GiB), which is what is used here; the
plan's 10% headroom covers the difference either way.

A slice is named as Cloud TPU names it: `v5p-8` counts TensorCores (two per v4/v5p chip: 4
chips), `v5e-8` and `v6e-8` count chips (one TensorCore each). `devices(slice)` gives the
slice's devices from libtpu's topology description (`jax.experimental.topologies`, as
MaxText's train_compile.py does): no TPU needed, nothing downloaded, programs compile for them.
"""
from __future__ import annotations

import dataclasses
import os

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  hbm_gib: float
  peak_flops: float        # bf16 FLOP/s
  hbm_bytes_per_s: float
  cores_per_chip: int      # TensorCores: the count in a slice's name
  topology: str            # libtpu's name of the chip family in a topology ("v5:2x2x1")
  chip_config: str         # libtpu's chip config ("megacore": both TensorCores as one device)
  chips_per_host: int
  source: str


CHIPS = {
    "v4": Chip("v4", 32, 275e12, 1200e9, 2, "v4", "megacore", 4,
               "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("v5e", 16, 197e12, 819e9, 1, "v5e", "default", 8,
                "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("v5p", 95, 459e12, 2765e9, 2, "v5", "megacore", 4,
                "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("v6e", 32, 918e12, 1638e9, 1, "v6e", "default", 8,
                "https://cloud.google.com/tpu/docs/v6e"),
}

# Chips -> the 2D shape of a v5e/v6e slice (Cloud TPU's supported shapes).
_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8),
              128: (8, 16), 256: (16, 16)}


@dataclasses.dataclass(frozen=True)
class Slice:
  name: str          # e.g. "v5p-8"
  chip: Chip
  chips: int
  shape: tuple       # chips along the torus axes
  host_bounds: tuple  # chips per host along the same axes

  @property
  def topology_name(self) -> str:
    return f"{self.chip.topology}:{'x'.join(map(str, self.shape))}"


def parse_slice(name: str) -> Slice:
  """'v5p-8' -> its chips and topology; a clear error names the slices that exist."""
  kind, _, count = name.partition("-")
  if kind not in CHIPS or not count.isdigit():
    raise ValueError(f"unknown TPU slice {name!r}: give <chip>-<cores> with chip one of "
                     f"{', '.join(CHIPS)} (e.g. v5e-8, v5p-8, v5p-16, v4-8, v6e-8)")
  chip = CHIPS[kind]
  cores = int(count)
  if cores % chip.cores_per_chip:
    raise ValueError(f"{name}: a {kind} chip has {chip.cores_per_chip} TensorCores, so the "
                     f"count must be a multiple of {chip.cores_per_chip}")
  chips = cores // chip.cores_per_chip
  if chip.cores_per_chip == 2:  # v4, v5p: 3D tori of 2x2x1 hosts
    if chips < 4 or chips % 4 or chips & (chips - 1):
      raise ValueError(f"{name}: {kind} slices have 4, 8, 16, ... chips (-8, -16, -32, ...)")
    shape = (2, 2, chips // 4) if chips <= 16 else _cube(chips)
    return Slice(name, chip, chips, shape, (2, 2, 1))
  if chips not in _SHAPES_2D:
    raise ValueError(f"{name}: {kind} slices have {sorted(_SHAPES_2D)} chips")
  shape = _SHAPES_2D[chips]
  hosts = (1, 1) if chips == 1 else (2, 2) if chips == 4 else (2, 4)
  return Slice(name, chip, chips, shape, hosts + (1,))


def _cube(chips: int) -> tuple:
  a = b = c = 1
  while a * b * c < chips:  # grow the smallest axis: 2x2x4, 2x4x4, 4x4x4, 4x4x8, ...
    if c <= a and c <= b:
      c *= 2
    elif b <= a:
      b *= 2
    else:
      a *= 2
  return tuple(sorted((a, b, c)))


def devices(spec: Slice) -> list:
  """The slice's compile-only TPU devices (libtpu from the `plan` extra; no TPU needed)."""
  # libtpu takes a machine-wide lock file when it starts; any other JAX process on the machine
  # (a test run, a notebook) holds it. A compile-only topology needs no exclusive TPU access.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies
  try:
    topology = topologies.get_topology_desc(
        topology_name=spec.topology_name, platform="tpu", chip_config_name=spec.chip.chip_config,
        chips_per_host_bounds=spec.host_bounds, num_slices=1, wrap=(False,) * 3)
  except Exception as e:  # no libtpu: jax raises several types for it
    raise RuntimeError(f"could not describe {spec.name} ({spec.topology_name}) to libtpu: "
                       f"{e}. Install the TPU compiler: pip install -e '.[plan]'") from e
  found = list(topology.devices)
  if len(found) != spec.chips:
    raise RuntimeError(f"libtpu described {len(found)} devices for {spec.name}, expected "
                       f"{spec.chips}")
  return found
