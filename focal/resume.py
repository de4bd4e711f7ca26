"""What a resume must match: the config, the data and the log the run was trained with.

A run directory with checkpoints continues only when nothing that decides its trajectory has
changed since (`focal.rundir.RunDir.check_resume` gathers the files and calls these):

  config     the new config against config.json, and against the config the newest checkpoint
             was saved under (its meta), so a hand-edited config.json resumed through
             configs/saved.py is caught too; `RESUMABLE` lists the fields that may change
  data       the content hash of each data file (data.path, data.eval_path) against the one
             config.json's provenance recorded; `allow_data_change` opts in, and is recorded
  log        metrics.jsonl must still hold every step logged up to the checkpoint (the meta
             counts them), or a deleted or truncated log would leave a silent gap

Every refusal names the differing fields, files and hashes, or the missing rows, and how to go on.
A config.json in an older layout (`outdated`) is refused by every reader, naming the one-time
migration (tools/migrate_results.py) that rewrites it.
"""
from __future__ import annotations

import os

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


class DataChanged(ConfigMismatch):
  """A run directory asked to continue on data files whose content changed."""


class MetricsLost(ValueError):
  """metrics.jsonl lost rows the run had written before its checkpoint."""


def flat(tree, prefix: str = "") -> dict:
  """{'a.b.c': leaf} of nested dicts."""
  out = {}
  for key, value in tree.items():
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


def _shown(diff: list[str]) -> str:
  return "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")


def check_config(path: str, saved: dict, new: dict, meta: dict | None, step: int | None) -> None:
  """ConfigMismatch unless `new` may continue a run saved as `saved` (config.json) whose newest
  checkpoint `step` was written under `meta["config"]` (absent in older checkpoints)."""
  how = (f"Resuming would mix two runs in one log and checkpoint; use a new --workdir, or "
         f"rerun with the saved config (--config=configs/saved.py:{path}). Fields that may "
         f"change on resume: {', '.join(RESUMABLE)}")
  diff = trajectory_diff(saved, new)
  if diff:
    raise ConfigMismatch(f"{path} holds a run trained under another config ({_shown(diff)}). "
                         + how)
  trained = (meta or {}).get("config")
  diff = trajectory_diff(trained, new) if isinstance(trained, dict) else []
  if diff:
    raise ConfigMismatch(
        f"{path}/config.json differs from the config its checkpoint step {step} was trained "
        f"under ({_shown(diff)}; checkpoint -> now): was config.json edited by hand? Resuming "
        "would continue that checkpoint under other settings. Undo the edit, or start a new "
        f"--workdir with the new settings. Fields that may change on resume: "
        f"{', '.join(RESUMABLE)}")


def check_data(path: str, recorded: dict | None, now: dict, allow: bool) -> list[dict]:
  """DataChanged when a data file's content differs from the one the run recorded, unless
  `allow`; returns the changes (to record in the provenance)."""
  changes = []
  for field, entry in sorted((recorded or {}).items()):
    current = now.get(field)
    if current is not None and current["sha256"] != entry.get("sha256"):
      changes.append({"field": field, "path": current["path"], "was": entry.get("sha256"),
                      "now": current["sha256"]})
  if changes and not allow:
    listed = "; ".join(f"{c['field']} {c['path']}: sha256 {c['was']} when the run recorded it, "
                       f"{c['now']} now" for c in changes)
    raise DataChanged(
        f"{path} was trained on other data ({listed}). Resuming would train its remaining "
        "steps on other prompts or rubrics under the same name. Restore the file, use a new "
        "--workdir, or pass --allow_data_change to continue on the new data (the change is "
        "recorded in config.json's provenance).")
  return changes


def check_rows(metrics_path: str, steps: list[int], meta: dict | None, step: int | None,
               allow: bool) -> None:
  """MetricsLost when metrics.jsonl holds fewer logged steps up to checkpoint `step` than the
  checkpoint counted when it was saved (`meta["logged_steps"]`, absent in older ones)."""
  expected = (meta or {}).get("logged_steps")
  if expected is None or allow:
    return
  have = len({s for s in steps if s <= step})
  if have < expected:
    what = "is gone" if not os.path.exists(metrics_path) else f"holds rows for {have} of them"
    raise MetricsLost(
        f"{metrics_path} {what}: the run had logged {expected} steps up to its checkpoint step "
        f"{step} (the last at step {meta.get('last_logged_step')}), so rows before the "
        "checkpoint were deleted or truncated. Resuming would leave those steps out of every "
        "curve and summary. Restore the file, or pass --allow_missing_rows to continue with "
        "them missing.")


class Outdated(ValueError):
  """A saved config.json in a layout older than the readers accept."""


MIGRATE = "python tools/migrate_results.py"


def outdated(data: dict) -> list[str]:
  """What marks a saved config (config.json without its provenance) as an older layout that the
  readers no longer accept; `MIGRATE` rewrites each of these into today's."""
  model, blocks = data.get("model"), ("remat", "attention", "logits_chunk", "lora")
  checks = (
      (isinstance(model, str), "model is a scale name, not a block"),
      (isinstance(model, dict) and not set(blocks) <= set(model),
       f"model lacks some of {', '.join(blocks)}"),
      ("source" not in data.get("data", {}), "data has no source"),
      ("grader" not in data, "no grader block"),
      ("judge" not in data.get("eval", {}), "eval has no judge block"),
      ("ref_memory_kind" not in data.get("mesh", {}), "mesh has no ref_memory_kind"),
      ("log" not in data, "no log block"),
      (set(data.get("advantage", {})) <= {"name"}, "advantage has no per-estimator blocks"))
  return [why for bad, why in checks if bad]
