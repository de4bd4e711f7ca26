"""What a run records besides its metrics (config.json, checkpoint meta; focal.rundir owns the
files): the config itself, its judges' API keys redacted (`config_record`), and the
"provenance": package versions, the git commit, devices, the mesh, and the content hash of
every data file the run trains and evaluates on (a resume on changed data is refused:
focal.resume)."""
from __future__ import annotations

import hashlib
import json
import importlib.metadata
import os
import platform
import subprocess

import jax

from focal.graders.judge.config import redact, secrets_of

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections",
             "tensorflow-datasets", "grain")

DATA_FIELDS = ("data.path", "data.eval_path")  # the files a rubric run trains and evaluates on


def provenance(mesh_shape=None, config=None) -> dict:
  """What produced a run, besides its config: versions, commit, devices, mesh, data hashes."""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {"python": platform.python_version(), "packages": versions, "git": _git_commit(),
          "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
          "process_count": jax.process_count(),
          "mesh_shape": None if mesh_shape is None else [int(s) for s in mesh_shape],
          "data": {} if config is None else data_hashes(config)}


def _git_commit() -> dict | None:
  """The commit of the checkout `focal` runs from, and whether it had local changes."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    run = lambda *args: subprocess.run(["git", *args], cwd=root, capture_output=True,
                                       text=True, timeout=10, check=True).stdout.strip()
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}
  except (OSError, subprocess.SubprocessError):
    return None  # an installed copy, or no git


def file_hash(path: str) -> str:
  """SHA-256 (first 16 hex digits) of a file, or of a directory's files (names and bytes)."""
  h = hashlib.sha256()

  def feed(name):
    with open(name, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)

  if os.path.isdir(path):  # an already built dataset
    for name in sorted(os.path.join(d, n) for d, _, names in os.walk(path) for n in names):
      h.update(os.path.relpath(name, path).encode() + b"\0")
      feed(name)
  else:
    feed(path)
  return h.hexdigest()[:16]


def data_hashes(config) -> dict:
  """{field: {"path", "sha256"}} of the data files a config names (none for the synthetic
  suite, whose prompts are a function of the seed); a missing file is left to the data
  loader's own error."""
  if config.data.source == "synthetic":
    return {}
  out = {}
  for field in DATA_FIELDS:
    path = config.data[field.split(".")[1]]
    if path and os.path.exists(path):
      out[field] = {"path": path, "sha256": file_hash(path)}
  return out


def config_record(config) -> dict:
  """The config as a run records it (config.json, each checkpoint's meta): JSON, with the
  judges' API keys redacted wherever one was pasted (the judge's one redaction function)."""
  return json.loads(redact(config.to_json_best_effort(), secrets_of(judge_key_envs(config))))


def judge_key_envs(config) -> list[str]:
  """The environment variables that hold the judges' API keys in `config`."""
  return [config[b].judge.api_key_env for b in ("grader", "eval") if config[b].judge.api_key_env]
