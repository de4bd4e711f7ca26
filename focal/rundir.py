"""The one owner of a run directory's layout; everything that reads or writes a run goes here.

  DIR/config.json     the resolved config, plus a "provenance" entry (package versions, git
                      commit, device kind and count, mesh shape) that `read_config` leaves out
  DIR/metrics.jsonl   one JSON object per logged step (keys: see focal.loop)
  DIR/tb/             TensorBoard event files (tensorboardX, no TensorFlow)
  DIR/wandb_run_id    the Weights & Biases run id, when config.log.wandb is on (focal.tracking)
  DIR/wandb/          W&B's own files, unless config.log.wandb.dir puts them elsewhere
  DIR/checkpoints/    orbax checkpoints of the whole train state (focal.checkpoint)

Sweeps, reports, evaluation and tools read runs through `RunDir` or `read_rows`.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess

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
    data = json.load(f)
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

  # -- writing ---------------------------------------------------------------

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
