"""A resume that notices changed data (issue 34): config.json's provenance records the content
hash of every data file; a run directory whose data changed since is refused, naming the file
and both hashes, unless --allow_data_change, which is recorded. A run directory is set up by
hand here (a config.json and one checkpoint): nothing needs training."""
import json
import os
import shutil

import jax.numpy as jnp
import pytest

from configs import base
from focal.provenance import data_hashes, file_hash
from focal.rundir import DataChanged, RunDir, config_record

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def rubric_config(tmp_path, eval_copy=False):
  c = base.get_config("tiny")
  c.data.source = "rubric_jsonl"
  c.data.path = str(tmp_path / "train.jsonl")
  shutil.copy(os.path.join(DATA, "rubric_tiny.jsonl"), c.data.path)
  if eval_copy:
    c.data.eval_path = str(tmp_path / "eval.jsonl")
    shutil.copy(os.path.join(DATA, "rubric_tiny.jsonl"), c.data.eval_path)
  return c


def run_dir_with_a_checkpoint(tmp_path, config) -> RunDir:
  run_dir = RunDir(str(tmp_path / "run"))
  run_dir.write_config(config, (1, 1, 1))
  ckpt = run_dir.checkpointer(keep=None, async_save=False)
  ckpt.save(3, {"w": jnp.zeros(2)}, {"step": 3, "config": config_record(config)})
  ckpt.close()
  return run_dir


def test_provenance_records_the_content_hash_of_each_data_file(tmp_path):
  config = rubric_config(tmp_path, eval_copy=True)
  run_dir = run_dir_with_a_checkpoint(tmp_path, config)
  recorded = run_dir.provenance()["data"]
  assert recorded == {"data.path": {"path": config.data.path, "sha256": file_hash(config.data.path)},
                      "data.eval_path": {"path": config.data.eval_path,
                                         "sha256": file_hash(config.data.eval_path)}}
  assert recorded["data.path"]["sha256"] == recorded["data.eval_path"]["sha256"]  # same bytes
  assert data_hashes(base.get_config("tiny")) == {}  # the synthetic suite: a function of the seed
  built = tmp_path / "built"  # an already built dataset directory: its files, names included
  built.mkdir()
  (built / "a").write_text("x")
  before = file_hash(str(built))
  (built / "a").rename(built / "b")
  assert file_hash(str(built)) != before


@pytest.mark.parametrize("field", ["data.path", "data.eval_path"])
def test_a_resume_on_changed_data_is_refused_naming_the_file_and_both_hashes(tmp_path, field):
  config = rubric_config(tmp_path, eval_copy=True)
  run_dir = run_dir_with_a_checkpoint(tmp_path, config)
  path = config.data.path if field == "data.path" else config.data.eval_path
  was = file_hash(path)
  with open(path) as f:
    first = f.readline()
  with open(path, "a") as f:  # one more prompt
    f.write(first.replace('"id": "q1"', '"id": "q99"'))
  now = file_hash(path)
  before = open(run_dir.config_path).read()
  with pytest.raises(DataChanged, match=rf"trained on other data \({field} {path}: sha256 {was} "
                                        rf"when the run recorded it, {now} now\).*"
                                        r"--allow_data_change"):
    run_dir.check_resume(config)
  assert open(run_dir.config_path).read() == before  # nothing written
  # The opt-in: the change is returned, then recorded with the step it was allowed at.
  changes = run_dir.check_resume(config, allow_data_change=True)
  assert changes == [{"field": field, "path": path, "was": was, "now": now, "at_step": 3}]
  run_dir.write_config(config, (1, 1, 1), changes)
  provenance = run_dir.provenance()
  assert provenance["data_changes"] == changes and provenance["data"][field]["sha256"] == now
  assert run_dir.check_resume(config) == []  # the new data is the run's data from now on
  # A later allowed change is recorded after the first one, not instead of it.
  with open(path, "a") as f:
    f.write(first.replace('"id": "q1"', '"id": "q98"'))
  more = run_dir.check_resume(config, allow_data_change=True)
  run_dir.write_config(config, (1, 1, 1), more)
  assert run_dir.provenance()["data_changes"] == changes + more


def test_unchanged_data_and_a_missing_file_pass_to_the_loader(tmp_path):
  config = rubric_config(tmp_path)
  run_dir = run_dir_with_a_checkpoint(tmp_path, config)
  assert run_dir.check_resume(config) == []
  os.remove(config.data.path)  # the data loader names a missing file itself, when it builds
  assert run_dir.check_resume(config) == []
  assert json.load(open(run_dir.config_path))["provenance"]["data_changes"] == []
