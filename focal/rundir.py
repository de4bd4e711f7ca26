"""The one owner of a run directory's layout; everything that reads or writes a run goes here.

  DIR/config.json     the resolved config, plus a "provenance" entry (package versions, git
                      commit, device kind and count, mesh shape) that `read_config` leaves out
  DIR/metrics.jsonl   one JSON object per logged step (keys: see focal.loop)
  DIR/tb/             TensorBoard event files (tensorboardX, no TensorFlow)
  DIR/wandb_run_id    the Weights & Biases run id, when config.log.wandb is on (focal.tracking)
  DIR/wandb/          W&B's own files, unless config.log.wandb.dir puts them elsewhere
  DIR/checkpoints/    orbax checkpoints of the whole train state (focal.checkpoint)
  DIR/lock            {pid, host} of the trainer using the directory (one at a time)

A run directory is written only by the run that made it: `check_resume` refuses a config that
would change the trajectory, and config.json is (re)written only after a successful restore or
a fresh start.

Sweeps, reports, evaluation and tools read runs through `RunDir` or `read_rows`.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import time

import jax
import ml_collections

from focal import tracking
from focal.checkpoint import Checkpointer

CONFIG = "config.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
WANDB_RUN_ID = "wandb_run_id"
CHECKPOINTS = "checkpoints"
PROVENANCE = "provenance"
LOCK = "lock"
EVAL_KEY = "eval/mean_rubric_reward"  # a row holding it is an evaluation row

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections",
             "tensorflow-datasets", "grain")


def read_rows(path: str) -> list[dict]:
  """The rows of a metrics.jsonl file, or of a run directory's ([] when there is none)."""
  if os.path.isdir(path):
    path = os.path.join(path, METRICS)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def read_config(path: str) -> ml_collections.ConfigDict:
  """The config a run saved: `path` is its directory or the config.json itself."""
  return ml_collections.ConfigDict(_read_config_json(path))


def _read_config_json(path: str) -> dict:
  if os.path.isdir(path):
    path = os.path.join(path, CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no saved config at {path}; pass --config=configs/base.py "
                            f"(with the run's overrides) instead")
  with open(path) as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON ({e}); the run's saved config is damaged: "
                       "pass --config=configs/base.py with the run's overrides instead") from None
  data.pop(PROVENANCE, None)
  return data


def provenance(mesh_shape=None) -> dict:
  """What produced a run, besides its config: versions, commit, devices, mesh."""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {"python": platform.python_version(), "packages": versions, "git": _git_commit(),
          "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
          "process_count": jax.process_count(),
          "mesh_shape": None if mesh_shape is None else [int(s) for s in mesh_shape]}


def _git_commit() -> dict | None:
  """The commit of the checkout `focal` runs from, and whether it had local changes."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    run = lambda *args: subprocess.run(["git", *args], cwd=root, capture_output=True,
                                       text=True, timeout=10, check=True).stdout.strip()
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}
  except (OSError, subprocess.SubprocessError):
    return None  # an installed copy, or no git


class MetricWriter:
  """Writes each row to metrics.jsonl, TensorBoard and, when `config.log.wandb` asks for it
  on process 0, Weights & Biases (the writers live in focal.tracking)."""

  def __init__(self, run_dir: "RunDir", config=None, process_index: int | None = None):
    self.path = run_dir.metrics_path
    self._writers = tracking.open_writers(run_dir, config, process_index)

  def write(self, row: dict) -> None:
    for writer in self._writers:
      writer.write(row)

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


class RunDir:
  """Paths, readers and writers of one run directory."""

  def __init__(self, path: str):
    self.path = os.fspath(path)

  config_path = property(lambda self: os.path.join(self.path, CONFIG))
  metrics_path = property(lambda self: os.path.join(self.path, METRICS))
  tensorboard_dir = property(lambda self: os.path.join(self.path, TENSORBOARD))
  checkpoint_dir = property(lambda self: os.path.join(self.path, CHECKPOINTS))
  wandb_id_path = property(lambda self: os.path.join(self.path, WANDB_RUN_ID))

  # -- reading ---------------------------------------------------------------

  def rows(self) -> list[dict]:
    return read_rows(self.metrics_path)

  def rows_by_step(self) -> dict[int, dict]:
    """Rows merged per step (a step's train and eval keys in one dict)."""
    merged: dict[int, dict] = {}
    for row in self.rows():
      merged.setdefault(row["step"], {}).update(row)
    return merged

  def eval_rows(self) -> list[dict]:
    return [r for r in self.rows() if EVAL_KEY in r]

  def last_eval_row(self) -> dict:
    evals = self.eval_rows()
    return evals[-1] if evals else {}

  def is_finished(self, total_steps: int) -> bool:
    return any(r["step"] == total_steps for r in self.eval_rows())

  def read_config(self) -> ml_collections.ConfigDict:
    return read_config(self.config_path)

  def provenance(self) -> dict | None:
    with open(self.config_path) as f:
      return json.load(f).get(PROVENANCE)

  def checkpoint_steps(self) -> list[int]:
    """Steps saved under checkpoints/ ([] when there is none; creates nothing)."""
    if not os.path.isdir(self.checkpoint_dir):
      return []
    ckpt = self.checkpointer(keep=None, async_save=False)
    try:
      return sorted(ckpt.all_steps())
    finally:
      ckpt.close()

  def check_resume(self, config) -> None:
    """Refuses to continue a run that has checkpoints under a config that would change its
    trajectory, naming the differing fields (`RESUMABLE` lists what may change)."""
    if not self.checkpoint_steps() or not os.path.exists(self.config_path):
      return
    saved = _read_config_json(self.config_path)
    diff = trajectory_diff(saved, json.loads(config.to_json_best_effort()))
    if diff:
      shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
      raise ConfigMismatch(
          f"{self.path} holds a run trained under another config ({shown}). Resuming would mix "
          "two runs in one log and checkpoint; use a new --workdir, or rerun with the saved "
          f"config (--config=configs/saved.py:{self.path}). Fields that may change on resume: "
          f"{', '.join(RESUMABLE)}")

  # -- writing ---------------------------------------------------------------

  @property
  def lock_path(self) -> str:
    return os.path.join(self.path, LOCK)

  def acquire_lock(self) -> None:
    """Takes the run directory for this process (one trainer per run directory); a lock left
    by a process that died on this host is taken over."""
    os.makedirs(self.path, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(2):
      try:
        fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        holder = self._lock_holder()
        if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
          os.remove(self.lock_path)  # its trainer died (kill -9, a crash): stale
          continue
        raise RunLocked(
            f"{self.path} is in use by pid {holder.get('pid')} on {holder.get('host')} (lock "
            f"{self.lock_path}); two trainers on one run directory would interleave their "
            "steps. Use another --workdir, or delete the lock if that trainer is gone.") from None
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      return

  def _lock_holder(self) -> dict:
    try:
      with open(self.lock_path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def release_lock(self) -> None:
    if self._lock_holder().get("pid") == os.getpid():
      os.remove(self.lock_path)

  def write_config(self, config, mesh_shape=None) -> None:
    os.makedirs(self.path, exist_ok=True)
    data = json.loads(config.to_json_best_effort())
    data[PROVENANCE] = provenance(mesh_shape)
    with open(self.config_path, "w") as f:
      json.dump(data, f, indent=2)

  def truncate_metrics(self, last_step: int) -> None:
    """Drops rows past `last_step`, so a resumed run never logs a step twice."""
    if not os.path.exists(self.metrics_path):
      return
    kept = [r for r in self.rows() if r["step"] <= last_step]
    with open(self.metrics_path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)

  def metric_writer(self, config=None, process_index: int | None = None) -> MetricWriter:
    """The run's writers; `config` (its log.wandb block) may add W&B on process 0."""
    os.makedirs(self.path, exist_ok=True)
    return MetricWriter(self, config, process_index)

  def checkpointer(self, keep: int | None, async_save: bool = True) -> Checkpointer:
    return Checkpointer(self.checkpoint_dir, keep=keep, async_save=async_save)


# Fields a resumed run may change: they decide how long it trains, what it logs and where, and
# how it reaches its judge, not the trajectory. Every other field must equal the saved config.
RESUMABLE = ("total_steps", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints",
             "vmap_seeds", "mesh.shape", "mesh.ref_memory_kind", "grpo.micro_batch_size",
             "grpo.rollout_micro_batch_size", "eval.", "log.", "warm_start.cache_dir",
             "data.cache_dir", "data.max_eval_prompts", "grader.judge.base_url",
             "grader.judge.api_key_env", "grader.judge.max_concurrency",
             "grader.judge.timeout_s", "grader.judge.max_retries", "grader.judge.cache_path",
             "grader.judge.backoff_s", "grader.judge.backoff_max_s", "grader.judge.jitter",
             "grader.judge.retry_after_max_s", "grader.judge.max_invalid_frac")


class ConfigMismatch(ValueError):
  """A run directory asked to continue under a config that changes its trajectory."""


def flat(tree, prefix: str = "") -> dict:
  """{'a.b.c': leaf} of nested dicts; an older run's `model: NAME` reads as model.scale."""
  out = {}
  for key, value in tree.items():
    if key == "model" and isinstance(value, str) and not prefix:
      value = {"scale": value}
    if isinstance(value, dict):
      out.update(flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def trajectory_diff(saved: dict, new: dict) -> list[str]:
  """'field: saved -> new' for the fields both configs have that differ and may not change.
  A field only one side has (added to the config since the run started) is not compared."""
  a, b = flat(saved), flat(new)
  resumable = lambda k: any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE)
  return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a.keys() & b.keys())
          if a[k] != b[k] and not resumable(k)]


class RunLocked(RuntimeError):
  """Another live trainer holds the run directory."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True
