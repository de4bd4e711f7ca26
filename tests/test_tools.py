"""tools/criterion_trace.py on a hand-written metrics.jsonl."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_criterion_trace_prints_weights_and_pass_rates_per_step(tmp_path):
  rows = [{"step": 0, "eval/mean_rubric_reward": 1.0, "eval/criterion/t/a": 0.25},
          {"step": 10, "train/weight/t/a": 0.75, "train/weight/t/b": 0.125, "train/factor/t/a": 1.5},
          {"step": 10, "eval/mean_rubric_reward": 2.0, "eval/criterion/t/a": 0.5}]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  out = subprocess.run([sys.executable, "tools/criterion_trace.py", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
  lines = out.splitlines()
  # Eval steps 0 and 10; weights exist from step 10 on; rows of one step are merged.
  assert lines[0].split() == ["train/weight/*", "step", "10"]
  assert lines[1].split() == ["t/a", "0.750"] and lines[2].split() == ["t/b", "0.125"]
  assert lines[4].split() == ["train/factor/*", "step", "10"] and lines[5].split() == ["t/a", "1.500"]
  assert lines[7].split() == ["eval/criterion/*", "step", "0", "step", "10"]
  assert lines[8].split() == ["t/a", "0.250", "0.500"]
  # --train adds the training rollouts' pass rates before the held-out ones.
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 10, "train/pass_rate/t/a": 0.875}) + "\n")
  out = subprocess.run([sys.executable, "tools/criterion_trace.py", str(tmp_path), "--train"],
                       cwd=REPO, capture_output=True, text=True, check=True).stdout
  lines = out.splitlines()
  assert lines[7].split() == ["train/pass_rate/*", "step", "10"] and lines[8].split() == ["t/a", "0.875"]
  assert lines[10].split() == ["eval/criterion/*", "step", "0", "step", "10"]
  missing = subprocess.run([sys.executable, "tools/criterion_trace.py", str(tmp_path / "nope")],
                           cwd=REPO, capture_output=True, text=True)
  assert missing.returncode != 0 and "no metrics.jsonl" in missing.stderr
