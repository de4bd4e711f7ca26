"""focal.tracking: metrics.jsonl, TensorBoard and Weights & Biases writers, TRL aliases, and the
loop's train/tokens_seen and train/learning_rate."""
from __future__ import annotations

import glob
import json
import os
import struct
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import wandb
from tensorboardX.proto import event_pb2
from wandb.proto import wandb_internal_pb2

from focal import loop, tracking
from focal.rundir import RunDir
from focal.metrics.rows import TokenCounter, train_row
from test_loop import tiny_config

TRAIN = {"train/reward_mean": 0.25, "train/response_length": 7.5, "train/clip_frac": 0.125,
         "train/zero_variance_groups": 0.5, "train/clipped_ratio": 0.25, "train/kl": 0.0,
         "train/entropy": 5.5, "train/learning_rate": 3e-4}
ROWS = [{"step": 0, "eval/mean_rubric_reward": 12.5},
        {"step": 1, **TRAIN, "train/tokens_seen": 120},
        {"step": 2, **TRAIN, "train/reward_mean": 0.5, "train/tokens_seen": 250,
         "eval/mean_rubric_reward": 20.0}]
SECRET = "sk-focal-test-do-not-log-4471"


@pytest.fixture(autouse=True)
def wandb_home(tmp_path, monkeypatch):
  """W&B's own config and cache directories inside the test's temp dir."""
  for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
    monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
  monkeypatch.delenv("WANDB_MODE", raising=False)
  monkeypatch.setenv("WANDB_SILENT", "true")


def wandb_config(**fields):
  """The tiny preset logging to W&B offline, with dotted `fields` overridden."""
  return tiny_config(**{"log.wandb.enabled": True, "log.wandb.mode": "offline", **fields})


def flush_wandb() -> None:
  """W&B's service writes an offline run's log just after `finish` returns; its teardown waits
  for that (the writers leave it alone: it would also finish runs Focal did not open)."""
  wandb.teardown()


def write_rows(run_dir: RunDir, config, rows, process_index: int = 0) -> None:
  writer = run_dir.metric_writer(config, process_index=process_index)
  for row in rows:
    writer.write(row)
  writer.close()
  flush_wandb()


def wandb_records(path: str):
  """The records of a W&B transaction log (a LevelDB-style log of 32 KiB blocks)."""
  with open(path, "rb") as f:
    data = f.read()
  ident, magic, _ = struct.unpack("<4sHB", data[:7])
  assert (ident, magic) == (b":W&B", 0xBEE1)
  block, pos, parts = 32768, 7, b""
  while pos + 7 <= len(data):
    if block - pos % block < 7:  # a block's tail too short for a header is padding
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
    parts = chunk if kind in (1, 2) else parts + chunk  # full/first, or middle/last
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(parts)
      yield record


def wandb_segments(directory: str, run_id: str) -> list[str]:
  """The transaction logs of every process segment of one offline run, oldest first (W&B
  names a segment's directory by its start second, then suffixes -1, -2 within one second)."""
  paths = glob.glob(os.path.join(directory, "wandb", f"offline-run-*-{run_id}*",
                                 f"run-{run_id}.wandb"))
  return sorted(paths, key=lambda p: os.path.basename(os.path.dirname(p)))


def wandb_history(directory: str, run_id: str) -> list[dict]:
  """Every history row W&B recorded for the run, W&B's own `_` keys left out."""
  rows = []
  for path in wandb_segments(directory, run_id):
    for record in wandb_records(path):
      if record.WhichOneof("record_type") == "history":
        items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                 for i in record.history.item}
        rows.append({"step": items["_step"],
                     **{k: v for k, v in items.items() if not k.startswith("_")}})
  return rows


def wandb_run_config(directory: str, run_id: str) -> dict:
  path = wandb_segments(directory, run_id)[0]
  run = next(r.run for r in wandb_records(path) if r.WhichOneof("record_type") == "run")
  return {u.key: json.loads(u.value_json) for u in run.config.update}


def tensorboard_scalars(logdir: str) -> dict:
  """{(tag, step): value} of every scalar in the TensorBoard event files under `logdir`."""
  out = {}
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    with open(path, "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 16 + length
      for value in event.summary.value:
        out[(value.tag, event.step)] = value.simple_value
  return out


def without_aliases(row: dict) -> dict:
  aliases = {a for names in tracking.TRL_ALIASES.values() for a in names}
  return {k: v for k, v in row.items() if k not in aliases}


def test_offline_wandb_history_equals_metrics_jsonl(tmp_path, monkeypatch):
  monkeypatch.setenv("FOCAL_TEST_JUDGE_KEY", SECRET)
  config = wandb_config(**{"grader.judge.api_key_env": "FOCAL_TEST_JUDGE_KEY"})
  run_dir = RunDir(str(tmp_path / "run"))
  run_dir.write_config(config)
  write_rows(run_dir, config, ROWS)
  assert run_dir.rows() == ROWS  # the JSONL keeps the stable keys only
  run_id = open(run_dir.wandb_id_path).read().strip()
  history = wandb_history(run_dir.path, run_id)
  assert [without_aliases(r) for r in history] == ROWS
  for row in history[1:]:
    assert row["train/completions/mean_length"] == row["train/response_length"]
    assert row["train/completions/clipped_ratio"] == row["train/clipped_ratio"]
    assert row["train/frac_reward_zero_std"] == row["train/zero_variance_groups"]
    assert row["train/clip_ratio"] == row["train/clip_ratio/region_mean"] == row["train/clip_frac"]
    assert row["train/reward"] == row["train/reward_mean"]
  logged = wandb_run_config(run_dir.path, run_id)
  assert logged["aggregator"]["name"] == config.aggregator.name
  assert logged["grader"]["judge"]["api_key_env"] == "FOCAL_TEST_JUDGE_KEY"
  assert logged["provenance"]["packages"]["jax"]
  for path in glob.glob(str(tmp_path / "**" / "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "rb") as f:
        assert SECRET.encode() not in f.read(), path


def test_tensorboard_gets_the_rows_and_their_trl_aliases(tmp_path):
  run_dir = RunDir(str(tmp_path))
  write_rows(run_dir, None, ROWS)
  scalars = tensorboard_scalars(run_dir.tensorboard_dir)
  assert scalars[("train/reward", 2)] == scalars[("train/reward_mean", 2)] == 0.5
  assert scalars[("train/completions/mean_length", 1)] == 7.5
  assert scalars[("train/frac_reward_zero_std", 1)] == 0.5
  assert scalars[("train/clip_ratio/region_mean", 1)] == 0.125
  assert scalars[("eval/mean_rubric_reward", 0)] == 12.5
  stable = {(k, r["step"]) for r in ROWS for k in r if k != "step"}
  aliases = {(a, r["step"]) for r in ROWS for k in r for a in tracking.TRL_ALIASES.get(k, ())}
  assert set(scalars) == stable | aliases
  assert not os.path.exists(os.path.join(run_dir.path, "wandb"))


def test_a_process_other_than_zero_writes_no_wandb_run(tmp_path):
  run_dir = RunDir(str(tmp_path))
  write_rows(run_dir, wandb_config(), ROWS, process_index=1)
  assert run_dir.rows() == []  # process 0 writes a shared run directory's rows, once
  assert not os.path.exists(run_dir.wandb_id_path)
  assert not os.path.exists(os.path.join(run_dir.path, "wandb"))


def test_resuming_a_run_directory_continues_its_wandb_run(tmp_path):
  config = wandb_config(**{"log.wandb.dir": str(tmp_path / "elsewhere")})
  run_dir = RunDir(str(tmp_path / "run"))
  write_rows(run_dir, config, ROWS[:2])
  run_id = open(run_dir.wandb_id_path).read().strip()
  write_rows(run_dir, config, ROWS[2:])
  assert open(run_dir.wandb_id_path).read().strip() == run_id
  segments = wandb_segments(str(tmp_path / "elsewhere"), run_id)
  assert len(segments) == 2
  assert [without_aliases(r) for r in wandb_history(str(tmp_path / "elsewhere"), run_id)] == ROWS
  assert not os.path.exists(os.path.join(run_dir.path, "wandb"))


def test_seeds_trained_together_keep_one_wandb_run_each(tmp_path):
  """run_group holds one writer per seed, open at once, written in turn."""
  config = wandb_config()
  run_dirs = [RunDir(str(tmp_path / f"seed{i}")) for i in range(2)]
  writers = [d.metric_writer(config, process_index=0) for d in run_dirs]
  for row in ROWS:
    for i, writer in enumerate(writers):
      writer.write({**row, "seed": i})
  for writer in writers:
    writer.close()
  flush_wandb()
  ids = [open(d.wandb_id_path).read().strip() for d in run_dirs]
  assert ids[0] != ids[1]
  for i, (d, run_id) in enumerate(zip(run_dirs, ids)):
    assert [without_aliases(r) for r in wandb_history(d.path, run_id)] == \
        [{**row, "seed": i} for row in ROWS]


def test_wandb_settings_fail_fast(monkeypatch):
  with pytest.raises(ValueError, match=r"config.log.wandb.mode='cloud'.*online, offline"):
    tracking.validate(wandb_config(**{"log.wandb.mode": "cloud"}))
  monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
  with pytest.raises(ImportError, match=r"pip install 'focal\[wandb\]'"):
    tracking.validate(wandb_config())
  tracking.validate(wandb_config(**{"log.wandb.enabled": False}))  # never imports wandb
  tracking.validate(wandb_config(**{"log.wandb.mode": "disabled"}))


def test_token_counter_sums_device_counts_exactly():
  counter = TokenCounter(before=2**24 + 1)  # not a float32: the sum must stay integer
  for n in (5, 7):
    counter.add({"response_tokens": jnp.int32(n)})
  assert counter.total() == 2**24 + 13
  assert counter.total() == 2**24 + 13  # fetched counts are not added twice
  counter.add({"response_tokens": jnp.int32(3)})
  assert counter.total() == 2**24 + 16


def test_train_row_leaves_the_token_count_to_tokens_seen():
  metrics = {"response_tokens": np.int32(40), "clipped_ratio": np.float32(0.25),
             "prompt_pass_rate": np.asarray([[0.5, 1.0]])}
  row = train_row(metrics, np.asarray([["a/x", "a/y"]]), step=3)
  assert row == {"step": 3, "train/clipped_ratio": 0.25, "train/pass_rate/a/x": 0.5,
                 "train/pass_rate/a/y": 1.0}


@pytest.mark.slow
def test_tokens_seen_and_wandb_history_survive_a_resume(tmp_path):
  """The loop: 2 steps, then resumed to 4, logging to W&B offline. tokens_seen grows by each
  step's response tokens, equals an uninterrupted run's that logs every other step only, and
  W&B's history over both process segments equals metrics.jsonl."""
  part, full = str(tmp_path / "part"), str(tmp_path / "full")
  loop.run(wandb_config(total_steps=2), part, progress=False)
  loop.run(wandb_config(), part, progress=False)
  config = wandb_config(log_every=2, **{"log.wandb.enabled": False})
  loop.run(config, full, progress=False)
  flush_wandb()
  rows, every_other = RunDir(part).rows(), RunDir(full).rows()
  assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
  rollouts = config.data.prompts_per_step * config.grpo.group_size
  seen = [0] + [r["train/tokens_seen"] for r in rows[1:]]
  for before, row in zip(seen, rows[1:]):
    assert row["train/tokens_seen"] - before == round(row["train/response_length"] * rollouts)
    assert row["train/learning_rate"] == config.optimizer.learning_rate
  assert [r["train/tokens_seen"] for r in every_other if "train/tokens_seen" in r] == seen[2::2]
  run_id = open(RunDir(part).wandb_id_path).read().strip()
  assert len(wandb_segments(part, run_id)) == 2
  assert [without_aliases(r) for r in wandb_history(part, run_id)] == rows
  assert not os.path.exists(RunDir(full).wandb_id_path)
