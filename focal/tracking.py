"""Where a run's metric rows go: metrics.jsonl, TensorBoard and, optionally, Weights & Biases.

  writers = open_writers(run_dir, config)      # what this process writes for this run
  for w in writers: w.write(row)               # one row per logged step (keys: focal.loop)
  for w in writers: w.close()

metrics.jsonl holds the stable keys only, one name per value, since scripts read it.
TensorBoard and W&B also receive each train row's TRL aliases (`TRL_ALIASES`): the names a
TRL GRPOTrainer run gets in those trackers (transformers prefixes its keys with `train/`), so
a Focal run and a TRL run overlay in one panel. `train/kl`, `train/entropy` and
`train/learning_rate` already are TRL's names and are written once.

Weights & Biases (`config.log.wandb`, off by default; `pip install wandb`, the `wandb` extra)
is written by process 0 only. The W&B run id is kept in the run directory (`wandb_run_id`),
so resuming the directory continues the same W&B run. W&B keeps the first value it gets for
a step: the steps a resumed run repeats (those after its checkpoint, equal to the lost ones
but for wall time) are dropped by W&B online. Offline, each process segment writes its own
`DIR/wandb/offline-run-*-<id>` directory under the one id; `wandb sync` uploads them. The run's
config (with its provenance) is logged as the W&B config; it holds no secret, since the judge
key lives in the environment variable that `api_key_env` names.
"""
from __future__ import annotations

import json
import os
from typing import Protocol

import jax

# Stable key -> the TRL GRPOTrainer names of the same quantity, as written to TensorBoard/W&B.
TRL_ALIASES = {
    "train/response_length": ("train/completions/mean_length",),
    "train/clipped_ratio": ("train/completions/clipped_ratio",),
    "train/zero_variance_groups": ("train/frac_reward_zero_std",),
    # TRL <= 0.16 logged `clip_ratio`; later versions `clip_ratio/region_mean`.
    "train/clip_frac": ("train/clip_ratio", "train/clip_ratio/region_mean"),
    "train/reward_mean": ("train/reward",),
}
WANDB_MODES = ("online", "offline", "disabled")


class Writer(Protocol):
  def write(self, row: dict) -> None: ...
  def close(self) -> None: ...


def with_aliases(row: dict) -> dict:
  """`row` plus each TRL alias of the keys it holds (same values)."""
  out = dict(row)
  for key, aliases in TRL_ALIASES.items():
    if key in row:
      out.update({alias: row[key] for alias in aliases})
  return out


def scalars(row: dict) -> dict:
  """The numeric entries of a row but its step, with their TRL aliases."""
  return {k: v for k, v in with_aliases(row).items()
          if k != "step" and isinstance(v, (int, float))}


class JsonlWriter:
  """Appends each row, as it is, to metrics.jsonl; one row per step: a step written again (a
  rerun repeating the steps after its checkpoint) replaces its earlier row."""

  def __init__(self, path: str):
    self.path = path
    self.steps: set[int] = set()
    if os.path.exists(path):
      with open(path) as f:
        self.steps = {_step_of(line) for line in f} - {None}

  def write(self, row: dict) -> None:
    step, line = row["step"], json.dumps(row) + "\n"
    if step in self.steps:  # replaced where it stood, so the log stays in step order
      with open(self.path) as f:
        lines = [ln for ln in f if _step_of(ln) is not None]
      at = next(i for i, ln in enumerate(lines) if _step_of(ln) == step)
      lines = [ln for i, ln in enumerate(lines) if i == at or _step_of(ln) != step]
      lines[at] = line
      with open(self.path, "w") as f:
        f.writelines(lines)
    else:
      with open(self.path, "a") as f:
        f.write(line)
      self.steps.add(step)

  def close(self) -> None:
    pass


def _step_of(line: str) -> int | None:
  """The step of a metrics.jsonl line; None for a blank or cut-short one."""
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return None


class TensorBoardWriter:
  """Each row's scalars (and aliases) as TensorBoard event files (tensorboardX, no TF)."""

  def __init__(self, logdir: str):
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(logdir)

  def write(self, row: dict) -> None:
    step = int(row["step"])
    for key, value in scalars(row).items():
      self._tb.add_scalar(key, value, step)
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def wandb_settings(config) -> dict | None:
  """The `log.wandb` block as a dict, or None when W&B is off: not enabled, mode "disabled",
  or no config given."""
  if config is None or not config.log.wandb.enabled:
    return None
  settings = config.log.wandb.to_dict()
  mode = settings["mode"]
  if mode not in WANDB_MODES:
    raise ValueError(f"config.log.wandb.mode={mode!r}; choose from {', '.join(WANDB_MODES)}")
  return None if mode == "disabled" else settings


def validate(config) -> None:
  """Fails fast, before anything is built, on a bad `log.wandb` block or a W&B run asked for
  without the wandb package."""
  if wandb_settings(config) is not None:
    import_wandb()


def import_wandb():
  try:
    import wandb
  except ImportError as e:
    raise ImportError("config.log.wandb.enabled=True needs the wandb package: "
                      "pip install 'focal[wandb]' (or pip install wandb)") from e
  return wandb


class WandbWriter:
  """One W&B run per run directory, resumed by the id kept in `run_dir.wandb_id_path`."""

  def __init__(self, run_dir, settings: dict, logged_config: dict):
    wandb = import_wandb()
    id_path = run_dir.wandb_id_path
    run_id = None
    if os.path.exists(id_path):
      with open(id_path) as f:
        run_id = f.read().strip() or None
    directory = os.path.expanduser(settings.get("dir") or run_dir.path)
    os.makedirs(directory, exist_ok=True)
    self._run = wandb.init(
        project=settings.get("project") or None, entity=settings.get("entity") or None,
        name=settings.get("run_name") or os.path.basename(os.path.abspath(run_dir.path)),
        dir=directory, mode=settings["mode"], config=logged_config,
        id=run_id, resume="allow",  # no id yet: W&B makes one, kept below
        # Seeds trained as one vmapped program hold one W&B run each, open together.
        reinit="create_new")
    with open(id_path, "w") as f:
      f.write(self._run.id + "\n")

  def write(self, row: dict) -> None:
    self._run.log(scalars(row), step=int(row["step"]))

  def close(self) -> None:
    self._run.finish()


def logged_config(run_dir, config) -> dict:
  """What W&B records as the run's config: config.json's content (config and provenance)."""
  if os.path.exists(run_dir.config_path):
    with open(run_dir.config_path) as f:
      return json.load(f)
  return json.loads(config.to_json_best_effort())


def open_writers(run_dir, config=None, process_index: int | None = None) -> list[Writer]:
  """The writers of one run on this process: JSONL and TensorBoard, and W&B when
  `config.log.wandb.enabled`, on process 0 only (every process computes the same rows; a
  shared run directory gets them once). `process_index` defaults to JAX's."""
  if process_index is None:
    process_index = jax.process_index()
  if process_index != 0:
    return []
  writers: list[Writer] = [JsonlWriter(run_dir.metrics_path),
                           TensorBoardWriter(run_dir.tensorboard_dir)]
  settings = wandb_settings(config)
  if settings is not None:
    writers.append(WandbWriter(run_dir, settings, logged_config(run_dir, config)))
  return writers
