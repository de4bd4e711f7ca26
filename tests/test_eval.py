"""Re-evaluating a checkpoint reproduces the loop's own evaluation of that step."""
import json
import os
import subprocess
import sys

import pytest

from configs import base, saved
from focal import evaluation, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  config = base.get_config("tiny")
  config.warm_start.cache_dir = ""
  config.total_steps = 2
  final = loop.run(config, workdir, progress=False)
  return workdir, final


def _evals(row):
  return {k: v for k, v in row.items() if k.startswith(("eval/", "eval_sampled/"))}


def test_function_reproduces_the_final_eval(tiny_run):
  workdir, final = tiny_run
  row = evaluation.evaluate_checkpoint(workdir)  # config from workdir/config.json
  assert row["step"] == final["step"] == 2
  # Same params, same RNG: greedy and sampled numbers are the logged ones, not just close.
  assert _evals(row) == _evals(final)
  report = evaluation.format_report(row)
  for label in ("mean rubric reward", "strict completion", "worst category", "polarization",
                "saturated", "dead", "zero-signal pressure", "keywords/"):
    assert label in report, label


def test_cli_prints_the_table_and_writes_json(tiny_run, tmp_path):
  workdir, final = tiny_run
  output = tmp_path / "out" / "eval.json"
  out = subprocess.run([sys.executable, "-m", "experiments.eval", f"--workdir={workdir}",
                        f"--output={output}"], cwd=REPO, capture_output=True, text=True,
                       timeout=600)  # a hang guard, not a speed target
  assert out.returncode == 0, out.stderr
  assert "strict completion" in out.stdout and "keywords/safety" in out.stdout
  assert _evals(json.loads(output.read_text())) == _evals(final)


def test_missing_checkpoint_is_a_clear_error(tiny_run, tmp_path):
  workdir, _ = tiny_run
  with pytest.raises(FileNotFoundError, match="no checkpoint in .*train first"):
    evaluation.evaluate_checkpoint(str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")  # probing must not create it
  with pytest.raises(FileNotFoundError, match="step 1 .*saved steps: 2"):
    evaluation.evaluate_checkpoint(workdir, step=1)


def test_saved_config_file_loads_the_run_config(tiny_run):
  workdir, _ = tiny_run
  config = saved.get_config(workdir)
  assert config.task == "keywords" and config.total_steps == 2
  assert config.to_dict() == evaluation.load_config(os.path.join(workdir, "config.json")).to_dict()


def test_evaluating_in_chunks_reproduces_the_final_eval(tiny_run):
  """grpo.rollout_micro_batch_size chunks evaluation's sampling too (2 rows per call here):
  every row draws from the same uniforms, so the row is the loop's own."""
  workdir, final = tiny_run
  config = evaluation.load_config(workdir)
  config.grpo.rollout_micro_batch_size = 2
  assert _evals(evaluation.evaluate_checkpoint(workdir, config)) == _evals(final)
