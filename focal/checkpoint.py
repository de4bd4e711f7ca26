"""Checkpoints of the whole train state plus the data position, with orbax.

The state (params, optimizer, reference, aggregator state, step, RNG) goes in
one `StandardSave` item; a JSON item `meta` carries what is not an array: the
data iterator's position and the metrics of that step. Restoring targets an
abstract copy of a freshly built state, so optimizer states come back with their
types (not as lists) and arrays land on the target's shardings.

A damaged newest checkpoint (a truncated array file, a deleted manifest, bad
JSON in `meta`, an empty step folder) never stops a resume: `restore()` skips
it with a warning naming the step and the error, and restores the newest step
that reads back. Once an older step has restored onto the same target, the
skipped ones are known to be damaged (not mismatched with the target), so they
are renamed `<step>.corrupt` (kept for inspection, out of orbax's sight) and
the run can save those steps again. When no step reads back, nothing is
renamed and the error lists every step with its reason.

A save killed while in flight leaves a `<step>.orbax-checkpoint-tmp-*` folder;
orbax never lists it as a step, so the restore takes the newest complete step
before it. The trainer (`cleanup_tmp`) deletes such folders when it opens the
directory; readers leave them, since one may be a live trainer's save.

LoRA's frozen base (`TrainState.base`, `LOADED_FIELDS`) is loaded with the run, never saved:
a checkpoint holds the adapters and their optimizer state, and a restore puts the target's
base back beside them.

A target may leave out (None) a top-level field that a checkpoint holds: the reference policy,
which a run with grpo.beta = 0 no longer stores, while checkpoints written before that change
hold one. That field is not read (a partial restore). A target may also be a dict of some of the
fields, e.g. {"params": abstract_params} (what evaluation and export read): only those are read,
and the state comes back as such a dict. The other way round, a checkpoint lacking a field the
target needs, is an error naming the field.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

CORRUPT_SUFFIX = ".corrupt"


class CheckpointError(RuntimeError):
  """No checkpoint under a directory could be restored."""


class Checkpointer:
  """Saves and restores (state, meta) under `directory`.

  Args:
    directory: where step folders go (created if missing).
    keep: how many checkpoints to keep (None keeps all).
    best_metric: keep the `keep` best by this key of `meta["metrics"]` instead
      of the most recent (the latest is still restorable while it is kept).
    best_mode: "max" or "min" for best_metric.
    async_save: return from `save` at once and write in the background.
    cleanup_tmp: delete the folders of saves a killed process left half written.
  """

  def __init__(self, directory: str, keep: int | None = 3, best_metric: str | None = None,
               best_mode: str = "max", async_save: bool = True, cleanup_tmp: bool = False):
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    self.directory = os.path.abspath(directory)
    best_fn = None
    if best_metric is not None:
      best_fn = lambda metrics: float(metrics[best_metric])
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, best_fn=best_fn, best_mode=best_mode,
        keep_checkpoints_without_metrics=best_metric is None,
        enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=cleanup_tmp)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._best_metric = best_metric

  def save(self, step: int, state, meta: dict[str, Any] | None = None, force: bool = False) -> bool:
    """Writes `state` and `meta` (JSON-serialisable) as checkpoint `step`."""
    meta = dict(meta or {})
    metrics = meta.get("metrics")
    if self._best_metric is not None and (metrics is None or self._best_metric not in metrics):
      raise ValueError(f"best_metric {self._best_metric!r} missing from meta['metrics'] "
                       f"(keys: {sorted(metrics or {})})")
    args = ocp.args.Composite(state=ocp.args.StandardSave(_without_loaded(state)),
                              meta=ocp.args.JsonSave(meta))
    return self._manager.save(int(step), args=args, metrics=metrics, force=force)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, target_state, step: int | None = None):
    """(state, meta) of `step`, restored onto `target_state`'s structure.

    `target_state` is a freshly initialised state (or one of ShapeDtypeStructs,
    with shardings where they matter). Returns None when nothing is saved.
    Without `step`, the newest step that reads back (see the module docstring);
    with it, exactly that step, or its error.
    """
    restored = self._restore(_without_loaded(target_state), step)
    if restored is None or not _loaded(target_state):
      return restored
    state, meta = restored
    return state.replace(**_loaded(target_state)), meta

  def _restore(self, target_state, step: int | None):
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    if step is not None:
      return self._restore_step(step, abstract)
    failures = []
    for candidate in sorted(self.all_steps(), reverse=True):
      try:
        restored = self._restore_step(candidate, abstract)
      except Exception as e:  # orbax and tensorstore raise many types for a damaged step
        reason = f"{type(e).__name__}: {_first_line(e)}"
        failures.append((candidate, reason))
        warnings.warn(f"checkpoint step {candidate} under {self.directory} could not be "
                      f"restored ({reason}); trying the step before it", RuntimeWarning,
                      stacklevel=2)
        continue
      if failures:
        self._set_aside([s for s, _ in failures])
      return restored
    if failures:
      listed = "; ".join(f"step {s}: {reason}" for s, reason in failures)
      raise CheckpointError(f"no checkpoint under {self.directory} could be restored ({listed})")
    return None

  def read_meta(self, step: int) -> dict | None:
    """The `meta` item of `step` alone (no arrays read), or None when it does not read back."""
    try:
      return dict(self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
    except Exception:  # a damaged step: restore() falls back past it
      return None

  def _restore_step(self, step: int, abstract):
    absent = self._absent_fields(step, abstract)
    if absent:  # fields added to the state since the step was saved, None in the target
      rest = {k: v for k, v in _fields(abstract).items() if k not in absent}
      state, meta = self._restore_step(step, rest)
      return abstract.replace(**state), meta
    state_args = ocp.args.StandardRestore(abstract)
    if self._skipped_fields(step, abstract):
      with_sharding = jax.tree.map(_with_default_sharding, abstract)
      state_args = ocp.args.PyTreeRestore(
          with_sharding, restore_args=ocp.checkpoint_utils.construct_restore_args(with_sharding),
          partial_restore=True)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=state_args, meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def stored_tree(self, step: int) -> dict:
    """The state checkpoint `step` holds, as a tree of metadata (no array is read)."""
    path = epath.Path(os.path.join(self.directory, str(step), "state"))
    return ocp.StandardCheckpointHandler().metadata(path).tree

  def _absent_fields(self, step: int, abstract) -> list[str]:
    """Top-level fields the target leaves out (None) that checkpoint `step` does not hold at
    all: fields added to the train state after the step was written (LoRA's `base`)."""
    if not dataclasses.is_dataclass(abstract):
      return []
    stored = self.stored_tree(step)
    return [k for k, v in _fields(abstract).items() if v is None and k not in stored]

  def _skipped_fields(self, step: int, abstract) -> list[str]:
    """Top-level fields that checkpoint `step` holds and the target leaves out (None, or a key
    a dict target lacks)."""
    target = _fields(abstract)
    if not target:
      return []
    stored = self.stored_tree(step)
    lacking = [k for k, v in target.items()
               if jax.tree.leaves(v) and k in stored and stored[k] is None]
    if lacking:
      raise ValueError(f"checkpoint step {step} holds no {', '.join(lacking)} (a run that did not "
                       f"keep it, e.g. the reference policy with grpo.beta = 0) but the target "
                       f"needs it")
    return [k for k, v in stored.items() if v is not None and target.get(k) is None]

  def _set_aside(self, steps: list[int]) -> None:
    """Renames damaged step folders out of orbax's sight, so those steps can be saved again."""
    if jax.process_index() == 0:
      for step in steps:
        src = os.path.join(self.directory, str(step))
        if not os.path.isdir(src):
          continue
        dst, n = src + CORRUPT_SUFFIX, 1
        while os.path.exists(dst):
          dst, n = f"{src}{CORRUPT_SUFFIX}-{n}", n + 1
        os.rename(src, dst)
        warnings.warn(f"damaged checkpoint step {step} moved to {dst}; restored the step "
                      f"before it", RuntimeWarning, stacklevel=3)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes("focal_checkpoint_set_aside")
    self._manager.reload()

  def wait(self) -> None:
    """Blocks until background saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


# Train-state fields that the run loads from its source (LoRA's frozen base, read from the
# model checkpoint or the warm start), not from its own checkpoints: a save writes None in their
# place, and a restore hands back the target's.
LOADED_FIELDS = ("base",)


def _loaded(state) -> dict:
  return {k: v for k, v in _fields(state).items() if k in LOADED_FIELDS and v is not None}


def _without_loaded(state):
  loaded = _loaded(state)
  return state.replace(**{k: None for k in loaded}) if loaded else state


def _fields(tree) -> dict:
  """A dataclass's or dict's top-level fields by name ({} for anything else)."""
  if dataclasses.is_dataclass(tree):
    return {f.name: getattr(tree, f.name) for f in dataclasses.fields(tree)}
  return dict(tree) if isinstance(tree, dict) else {}


def _with_default_sharding(x):
  """A target without a sharding is read whole onto this process's first device: the global
  first device belongs to process 0, and another process cannot hold a shard there."""
  if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None:
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(
        jax.local_devices()[0]))
  return x


def _first_line(error: Exception) -> str:
  """The head of an error's message (tensorstore's run to pages of JSON spec)."""
  text = str(error).strip().splitlines()
  head = text[0] if text else ""
  return head if len(head) <= 300 else head[:300] + "..."
