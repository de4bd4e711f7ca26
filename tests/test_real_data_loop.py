"""The papers' setting in miniature: a Hugging Face checkpoint (a tiny random Qwen3 with Qwen3's
chat template), rubric datasets, and host graders (rules in the data; an LLM judge served on
127.0.0.1), through the one loop, evaluation and export."""
import hashlib
import json
import os
import shutil

import pytest

from configs import base
from focal import evaluation, loop
from focal.graders.openai_server import ChatServer, last_user_text
from focal.models.pretrained import load_pretrained
from focal.rundir import DataChanged, RunDir
from chat_checkpoint import make_chat_checkpoint

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  return make_chat_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "qwen3-tiny"))


def real_config(tmp_path, checkpoint, source, path, kind):
  c = base.get_config("tiny")
  c.model.checkpoint = checkpoint
  c.data.source, c.data.path, c.data.eval_path = source, path, path
  c.data.cache_dir = str(tmp_path / "datasets")
  c.data.prompts_per_step = 2
  c.data.max_prompt_tokens = 256
  c.warm_start.steps = 0
  c.grader.kind = kind
  c.total_steps = c.eval_every = 2
  c.grpo.group_size = 2
  c.grpo.max_new_tokens = 8
  c.aggregator.name = "pow3r"
  return c


def coin_judge(body):
  """Met or not by a hash of the whole judge prompt: deterministic, and both outcomes occur."""
  met = hashlib.sha256(last_user_text(body).encode()).digest()[0] % 2 == 0
  return {"content": json.dumps({"explanation": "coin", "criteria_met": met})}


def test_rubric_jsonl_with_rules_trains_evaluates_and_exports(tmp_path, checkpoint):
  data = str(tmp_path / "rubric.jsonl")
  shutil.copy(os.path.join(DATA, "rubric_tiny.jsonl"), data)
  config = real_config(tmp_path, checkpoint, "rubric_jsonl", data, "rules")
  workdir = str(tmp_path / "run")
  final = loop.run(config, workdir, progress=False)
  rows = RunDir(workdir).rows()
  assert [r["step"] for r in rows] == [0, 1, 2]
  assert rows[0]["data/train_prompts"] == 4 and rows[0]["data/train_truncated"] == 0
  assert {"eval/category/accuracy", "eval/category/style", "eval/category/safety"} <= set(final)
  assert any(k.startswith("train/pass_rate/accuracy") for k in rows[1])
  assert "train/factor/style" in rows[1]  # POW3R's factors, named by category
  # Re-evaluating the checkpoint reproduces the logged evaluation (the rules are exact).
  again = evaluation.evaluate_checkpoint(workdir)
  assert again["eval/mean_rubric_reward"] == final["eval/mean_rubric_reward"]
  # Export: a Hugging Face checkpoint with the source's tokenizer that loads back the same.
  from focal.models.hf_export import export_checkpoint
  setup = evaluation.build_for_eval(RunDir(workdir).read_config())
  params, _ = evaluation.restore_params(setup, workdir)
  from flax import nnx
  out = str(tmp_path / "exported")
  export_checkpoint(out, nnx.merge(setup.graphdef, params).cfg, params, source=checkpoint)
  assert load_pretrained(out).stop_ids == load_pretrained(checkpoint).stop_ids
  # Resuming after the data file changed (its rubrics, its prompts) is refused, naming it.
  recorded = RunDir(workdir).provenance()["data"]["data.path"]["sha256"]
  with open(data, "a") as f:
    f.write(open(data).readline().replace('"id": "q1"', '"id": "q9"'))
  config.total_steps = 4
  with pytest.raises(DataChanged, match=rf"data.path {data}: sha256 {recorded} when the run "
                                        r"recorded it, [0-9a-f]{16} now"):
    loop.run(config, workdir, progress=False)


def healthbench_config(tmp_path, checkpoint, server):
  """real_config on HealthBench's tiny file, judged by `server` (a coin_judge ChatServer)."""
  config = real_config(tmp_path, checkpoint, "healthbench",
                       os.path.join(DATA, "healthbench_tiny.jsonl"), "judge")
  config.grader.judge.base_url = server.url
  config.grader.judge.model = "coin"
  config.grader.judge.cache_path = str(tmp_path / "verdicts.sqlite")
  return config


def test_healthbench_with_a_judge_reports_the_official_score(tmp_path, checkpoint):
  server = ChatServer(coin_judge, models=("coin",)).start()
  try:
    config = healthbench_config(tmp_path, checkpoint, server)
    final = loop.run(config, str(tmp_path / "run"), progress=False)
  finally:
    server.close()
  assert 0.0 <= final["eval/healthbench_score"] <= 1.0
  assert final["eval/healthbench_score_unclipped"] <= final["eval/healthbench_score"] + 1e-6 or \
      final["eval/healthbench_score_unclipped"] > 1.0
  assert final["eval/invalid_verdict_frac"] == 0.0
  assert any(k.startswith("eval/category/completeness") for k in final)
  rows = RunDir(str(tmp_path / "run")).rows()
  assert rows[1]["train/judge_requests"] > 0


@pytest.mark.slow  # about 15 s each; tests/test_scaling_commands.py runs them on 8 devices too
@pytest.mark.parametrize("preset, source, data", [
    ("configs/paper/pow3r_healthbench.py:smoke", "healthbench", "healthbench_tiny.jsonl"),
    ("configs/paper/focal_rar.py:smoke", "rar", "rar_tiny.jsonl"),
])
def test_paper_presets_run_their_documented_command_shrunk(tmp_path, checkpoint, preset, source,
                                                           data):
  """The docstring's command with the smoke variant: checkpoint, data and judges by flags."""
  import subprocess
  import sys
  server = ChatServer(coin_judge, models=("coin",)).start()
  repo = os.path.dirname(DATA.rstrip("/").rsplit("/", 1)[0])
  try:
    out = subprocess.run(
        [sys.executable, "-m", "experiments.train", f"--config={preset}",
         f"--config.model.checkpoint={checkpoint}", f"--config.data.path={DATA}/{data}",
         f"--config.data.cache_dir={tmp_path}/datasets", "--config.data.eval_fraction=0.5",
         f"--config.grader.judge.base_url={server.url}", "--config.grader.judge.model=coin",
         f"--config.eval.judge.base_url={server.url}", "--config.eval.judge.model=coin",
         f"--workdir={tmp_path}/run"],
        cwd=repo, capture_output=True, text=True, timeout=900)
  finally:
    server.close()
  assert out.returncode == 0, out.stderr[-3000:]
  rows = RunDir(str(tmp_path / "run")).rows()
  assert [r["step"] for r in rows] == [0, 1, 2]
  assert RunDir(str(tmp_path / "run")).read_config().data.source == source
