"""The one owner of a run directory's layout; everything that reads or writes a run goes here.

  DIR/config.json     the resolved config, plus a "provenance" entry (package versions, git
                      commit, device kind and count, mesh shape, the content hash of each data
                      file, data changes a resume allowed) that `read_config` leaves out
  DIR/metrics.jsonl   one JSON object per logged step (keys: see focal.loop)
  DIR/tb/             TensorBoard event files (tensorboardX, no TensorFlow)
  DIR/wandb_run_id    the Weights & Biases run id, when config.log.wandb is on (focal.tracking)
  DIR/wandb/          W&B's own files, unless config.log.wandb.dir puts them elsewhere
  DIR/checkpoints/    orbax checkpoints of the whole train state (focal.checkpoint)
  DIR/lock            {pid, host} of the trainer using the directory (one at a time)

A run directory is written only by the run that made it: `check_resume` refuses a config, data
or a log that would change or hide its trajectory (focal.resume), and config.json is
(re)written only after a successful restore or a fresh start. The judge's API key never reaches
config.json: its text goes through the judge's one redaction function.

Sweeps, reports, evaluation and tools read runs through `RunDir` or `read_rows`.
"""
from __future__ import annotations

import json
import os

import jax
import ml_collections

from focal import provenance as prov, resume, tracking
from focal.checkpoint import Checkpointer
from focal.provenance import config_record
from focal.run_lock import RunDirError, RunLock, RunLocked  # noqa: F401
from focal.resume import (RESUMABLE, ConfigMismatch, DataChanged, MetricsLost, flat,  # noqa: F401
                          trajectory_diff)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
WANDB_RUN_ID = "wandb_run_id"
CHECKPOINTS = "checkpoints"
PROVENANCE = "provenance"
LOCK = "lock"
EVAL_KEY = "eval/mean_rubric_reward"  # a row holding it is an evaluation row


def read_rows(path: str) -> list[dict]:
  """The rows of a metrics.jsonl file, or of a run directory's ([] when there is none). A last
  line cut short (a process killed while writing it) is left out; a bad line before it is an
  error naming the file and line."""
  if os.path.isdir(path):
    path = os.path.join(path, METRICS)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
  rows = []
  for n, (i, line) in enumerate(lines):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      if n == len(lines) - 1 and not line.endswith("\n"):
        break  # the write in progress when its process died
      raise ValueError(f"{path}:{i}: not a JSON row ({e})") from None
  return rows


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
  why = resume.outdated(data)
  if why:
    raise resume.Outdated(f"{path} was written by an older Focal ({'; '.join(why)}); migrate "
                          f"its runs once with: {resume.MIGRATE} "
                          f"{os.path.dirname(os.path.abspath(path))}")
  return data



class MetricWriter:
  """Writes each row to metrics.jsonl, TensorBoard and, when `config.log.wandb` asks for it
  on process 0, Weights & Biases (the writers live in focal.tracking)."""

  def __init__(self, run_dir: "RunDir", config=None, process_index: int | None = None):
    self.path = run_dir.metrics_path
    self._writers = tracking.open_writers(run_dir, config, process_index)

  def write(self, row: dict) -> None:
    for writer in self._writers:
      writer.write(row)

  def logged_steps(self) -> list[int] | None:
    """The steps metrics.jsonl holds (None on a process that writes no log)."""
    for writer in self._writers:
      if isinstance(writer, tracking.JsonlWriter):
        return sorted(writer.steps)
    return None

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

  def check_resume(self, config, allow_data_change: bool = False,
                   allow_missing_rows: bool = False) -> list[dict]:
    """Refuses to continue a run that has checkpoints under a config, data or log that would
    change or hide its trajectory (see focal.resume); returns the data changes allowed."""
    if not os.path.exists(self.config_path):
      return []
    found = self.latest_meta()
    if found is None:
      return []
    step, meta = found
    saved = _read_config_json(self.config_path)
    resume.check_config(self.path, saved, config_record(config), meta, step)
    recorded = (self.provenance() or {}).get("data")
    changes = resume.check_data(self.path, recorded, prov.data_hashes(config),
                                allow_data_change)
    if jax.process_index() == 0:  # process 0 writes the log
      resume.check_rows(self.metrics_path, [r["step"] for r in self.rows()], meta, step,
                        allow_missing_rows)
    return [{**c, "at_step": step} for c in changes]

  def latest_meta(self) -> tuple[int, dict] | None:
    """(step, meta) of the newest checkpoint whose meta reads back; None without one."""
    if not os.path.isdir(self.checkpoint_dir):
      return None
    ckpt = self.checkpointer(keep=None, async_save=False)
    try:
      for step in sorted(ckpt.all_steps(), reverse=True):
        meta = ckpt.read_meta(step)
        if meta is not None:
          return step, meta
      return (max(ckpt.all_steps()), {}) if ckpt.all_steps() else None
    finally:
      ckpt.close()

  # -- writing ---------------------------------------------------------------

  @property
  def lock_path(self) -> str:
    return os.path.join(self.path, LOCK)

  def acquire_lock(self) -> None:
    """Takes the run directory for this process (focal.run_lock: one trainer per run
    directory; a dead trainer's lock on this host is taken over)."""
    self._lock = RunLock(self.path, LOCK)
    self._lock.acquire()

  def release_lock(self) -> None:
    """Frees the directory; one the lock created and nothing else wrote goes too."""
    (getattr(self, "_lock", None) or RunLock(self.path, LOCK)).release()

  def write_config(self, config, mesh_shape=None, data_changes=()) -> None:
    """config.json: the config and its provenance, with the data changes resumes allowed so
    far (earlier ones kept) and the judges' keys redacted."""
    os.makedirs(self.path, exist_ok=True)
    data = config_record(config)
    earlier = []
    if os.path.exists(self.config_path):
      try:
        earlier = (self.provenance() or {}).get("data_changes", [])
      except (OSError, ValueError):
        earlier = []
    data[PROVENANCE] = {**prov.provenance(mesh_shape, config),
                        "data_changes": earlier + list(data_changes)}
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

  def checkpointer(self, keep: int | None, async_save: bool = True,
                   cleanup_tmp: bool = False) -> Checkpointer:
    """`cleanup_tmp`: delete folders of saves a killed trainer left half written (the trainer
    only, under its lock: a reader must never delete a live trainer's save in flight)."""
    return Checkpointer(self.checkpoint_dir, keep=keep, async_save=async_save,
                        cleanup_tmp=cleanup_tmp)
