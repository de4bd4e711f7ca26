"""Peak host memory and time of loading a ~500M-parameter bfloat16 HF checkpoint.

  python benchmarks/load.py [--shards 4] [--mesh 1,1,1] [--dir DIR]

Writes a random checkpoint shaped like Qwen2.5-0.5B (494M parameters, tied embeddings, q/k/v
biases) in bfloat16, sharded into `--shards` safetensors files plus an index, into a temporary
directory (or --dir, kept). Then a fresh subprocess loads it with
`load_hf_checkpoint(..., param_dtype="bfloat16", mesh=...)` and reports its peak resident set
(VmHWM from /proc/self/status) and the seconds the load took. Target: peak RSS at most 1.3x the
checkpoint's size on disk. On a CPU backend the loaded parameters themselves live in host memory
(1.0x), so the target leaves 0.3x for the interpreter, JAX and the loader's transient buffers;
on an accelerator they live in device memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

TARGET = 1.3
# Qwen2.5-0.5B's shape (ModelConfig fields; a test shrinks it).
SHAPE = dict(vocab_size=151936, d_model=896, n_layers=24, n_heads=14, n_kv_heads=2, head_dim=64,
             d_ff=4864, rope_theta=1e6, qkv_bias=True, tie_embeddings=True, max_seq_len=32768,
             param_dtype="bfloat16")
GIB = 2 ** 30


def _status(field: str) -> int:
  """A /proc/self/status field in bytes (VmHWM: peak RSS, VmRSS: current RSS)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  raise RuntimeError(f"/proc/self/status has no {field}")


def write_checkpoint(directory: str, shards: int) -> int:
  """A random bfloat16 Qwen2.5-0.5B-shaped checkpoint; returns its parameter count."""
  import ml_dtypes
  from tqdm.auto import tqdm

  from focal.models.hf_config import config_to_hf
  from focal.models.hf_import import hf_shapes
  from focal.models.safetensors_io import write_checkpoint as write
  from focal.models.transformer import ModelConfig, abstract_model
  import jax

  config = ModelConfig(**SHAPE)
  specs = {name: (ml_dtypes.bfloat16, shape)
           for name, shape in hf_shapes(abstract_model(config)[1], config.n_layers).items()}
  total = sum(int(np.prod(shape)) for _, shape in specs.values())
  rng = np.random.default_rng(0)
  bar = tqdm(total=len(specs), desc="writing checkpoint", unit="tensor")

  def fetch(name):
    bar.update()
    return (0.02 * rng.standard_normal(specs[name][1], np.float32)).astype(ml_dtypes.bfloat16)

  write(directory, specs, fetch, max_shard_bytes=-(-total * 2 // shards),
        metadata={"format": "pt"})
  bar.close()
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config_to_hf(config), f)
  return total


def child(directory: str, mesh_shape: str) -> None:
  """Runs in a fresh process: load, then print one JSON line of measurements."""
  import jax

  from focal import sharding
  from focal.models.hf_import import load_hf_checkpoint

  shape = [int(s) for s in mesh_shape.split(",")]
  mesh = None if shape == [1, 1, 1] else sharding.make_mesh(shape)
  jax.numpy.zeros(1).block_until_ready()  # backend up before the baseline
  baseline = _status("VmRSS")
  start = time.perf_counter()
  _, _, state = load_hf_checkpoint(directory, param_dtype="bfloat16", mesh=mesh)
  jax.block_until_ready(state)
  seconds = time.perf_counter() - start
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  print(json.dumps({"peak_rss": _status("VmHWM"), "baseline_rss": baseline,
                    "seconds": seconds, "param_bytes": param_bytes,
                    "backend": jax.default_backend(), "devices": jax.device_count(),
                    "jax": jax.__version__}))


def run(directory: str, shards: int, mesh_shape: str) -> None:
  params = write_checkpoint(directory, shards)
  files = [f for f in os.listdir(directory) if f.endswith(".safetensors")]
  disk = sum(os.path.getsize(os.path.join(directory, f)) for f in files)
  env = dict(os.environ)
  devices = int(np.prod([int(s) for s in mesh_shape.split(",")]))
  if devices > 1 and "XLA_FLAGS" not in env:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out = subprocess.run([sys.executable, __file__, "--child", directory, "--mesh", mesh_shape],
                       env=env, capture_output=True, text=True, check=True)
  m = json.loads(out.stdout.strip().splitlines()[-1])
  print(f"jax {m['jax']} backend={m['backend']} devices={m['devices']} mesh={mesh_shape} "
        f"python {platform.python_version()} cpus={os.cpu_count()} {platform.machine()}")
  print(f"checkpoint: {params / 1e6:.0f}M parameters, bfloat16, {len(files)} files, "
        f"{disk / GIB:.3f} GiB on disk")
  print(f"loaded params: {m['param_bytes'] / GIB:.3f} GiB; load: {m['seconds']:.1f} s "
        f"({disk / GIB / m['seconds']:.2f} GiB/s)")
  print(f"RSS before loading (interpreter + jax): {m['baseline_rss'] / GIB:.3f} GiB; peak beyond "
        f"it and the params: {(m['peak_rss'] - m['baseline_rss'] - m['param_bytes']) / GIB:.3f} GiB")
  ratio = m["peak_rss"] / disk
  print(f"peak RSS (VmHWM): {m['peak_rss'] / GIB:.3f} GiB = {ratio:.2f}x the size on disk "
        f"(target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'})")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shards", type=int, default=4)
  parser.add_argument("--mesh", default="1,1,1", help="data,fsdp,tensor (CPU devices simulated)")
  parser.add_argument("--dir", default=None, help="write the checkpoint here and keep it")
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    return child(args.child, args.mesh)
  if args.dir:
    os.makedirs(args.dir, exist_ok=True)
    return run(args.dir, args.shards, args.mesh)
  with tempfile.TemporaryDirectory() as tmp:
    run(tmp, args.shards, args.mesh)


if __name__ == "__main__":
  main()
