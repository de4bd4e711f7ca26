"""configs/judge_demo.py end to end, shrunk: reading the config builds nothing, the assets
command builds the checkpoint and RaR files once, and training runs against the rule judge
server on 127.0.0.1."""
import json
import os

import pytest

from configs import judge_demo
from focal import demo, loop
from focal.graders.rule_server import make_server
from focal.models.pretrained import load_pretrained
from focal.rundir import RunDir


def test_judge_demo_builds_its_assets_once_and_trains_against_the_rule_server(tmp_path,
                                                                             monkeypatch):
  monkeypatch.setenv("FOCAL_DEMO_CACHE", str(tmp_path / "cache"))
  with pytest.warns(UserWarning, match="python -m experiments.demo_assets "
                                       "--config=configs/judge_demo.py:smoke"):
    config = judge_demo.get_config("smoke")
  assert not (tmp_path / "cache").exists()  # reading the config built nothing
  paths = demo.prepare(judge_demo.get_assets("smoke"), progress=False)  # experiments.demo_assets
  assert paths == (config.model.checkpoint, config.data.path, config.data.eval_path)
  checkpoint = config.model.checkpoint
  pretrained = load_pretrained(checkpoint)
  assert pretrained.config.vocab_size == 260 and pretrained.stop_ids == (258,)
  record = json.loads(open(config.data.path).readline())
  assert record["rubric"][0]["description"].startswith("Essential Criteria: keywords/")
  stamp = os.stat(os.path.join(checkpoint, "model.safetensors")).st_mtime_ns
  assert demo.prepare(judge_demo.get_assets("smoke")) == paths  # reused, not rebuilt
  assert os.stat(os.path.join(checkpoint, "model.safetensors")).st_mtime_ns == stamp
  server = make_server(port=0).start()
  try:
    config.grader.judge.base_url = server.url
    config.data.cache_dir = str(tmp_path / "datasets")
    final = loop.run(config, str(tmp_path / "run"), progress=False)
  finally:
    server.close()
  rows = RunDir(str(tmp_path / "run")).rows()
  assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
  # The rule server answers every suite prompt: no invalid verdict anywhere.
  assert all(r.get("train/invalid_verdict_frac", 0.0) == 0.0 for r in rows)
  assert final["eval/invalid_verdict_frac"] == 0.0
  assert any(k.startswith("eval/category/Essential") for k in final)
