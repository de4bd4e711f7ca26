"""tools/criterion_trace.py on a hand-written metrics.jsonl; tools/splice_summary.py on hand-written docs;
tools/mutation.py's configuration."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

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


SUMMARY = """Finished: 3 of 8 runs.

## Final held-out metrics (mean ± std over seeds)

| task | value |
|---|---|
| arith | 2.0 ± 0.1 |

## Wins

### Focal vs the strongest static baseline: 1 wins out of 1

Plots: gaps.png (each aggregator minus weighted sum).
"""

RESULTS = """# Results

## 1. Other section

#### Final held-out metrics (mean ± std over seeds)

| untouched | 1 |

## 4. The grid

Prose kept above the tables.

#### Final held-out metrics (mean ± std over seeds)

| task | value |
|---|---|
| arith | 1.0 ± 0.5 |

#### Wins

![gaps](img/gaps.png)

### Reading kept below

## 5. Next
"""


def test_splice_summary_replaces_only_the_sections_tables(tmp_path):
  sys.path.insert(0, REPO)
  from tools.splice_summary import splice
  out = splice(RESULTS, SUMMARY, "## 4. ")
  head, grid = out.split("## 4. The grid")
  assert head == RESULTS.split("## 4. The grid")[0]  # other sections untouched
  assert "| arith | 2.0 ± 0.1 |" in grid and "1.0 ± 0.5" not in grid
  assert "##### Focal vs the strongest static baseline: 1 wins out of 1" in grid
  assert "Finished:" not in out and "Plots:" not in out
  assert grid.index("Prose kept") < grid.index("#### Final") < grid.index("#### Wins") \
      < grid.index("![gaps]") < grid.index("### Reading kept below") < grid.index("## 5. Next")
  assert splice(out, SUMMARY, "## 4. ") == out  # idempotent

  (tmp_path / "R.md").write_text(RESULTS)
  (tmp_path / "S.md").write_text(SUMMARY)
  (tmp_path / "gaps.png").write_bytes(b"png")
  run = subprocess.run([sys.executable, "tools/splice_summary.py", str(tmp_path / "S.md"),
                        str(tmp_path / "R.md"), "--section", "## 4. ",
                        "--image", f"{tmp_path / 'gaps.png'}={tmp_path / 'copy.png'}"],
                       cwd=REPO, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  assert (tmp_path / "R.md").read_text() == out
  assert (tmp_path / "copy.png").read_bytes() == b"png"
  missing = subprocess.run([sys.executable, "tools/splice_summary.py", str(tmp_path / "S.md"),
                            str(tmp_path / "R.md"), "--section", "## 9. "],
                           cwd=REPO, capture_output=True, text=True)
  assert missing.returncode != 0 and "found 0" in missing.stderr


def _mutation_tool():
  spec = importlib.util.spec_from_file_location("mutation_tool",
                                                os.path.join(REPO, "tools", "mutation.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # imports the standard library only; cosmic-ray when it runs
  return module


def test_mutation_run_covers_every_formula_module_with_existing_tests():
  tool = _mutation_tool()
  for package in ("focal/aggregators", "focal/advantages"):
    for name in os.listdir(os.path.join(REPO, package)):
      if name.endswith(".py") and name != "__init__.py":
        assert f"{package}/{name}" in tool.GROUPS, name
  for module, (tests, _) in tool.GROUPS.items():
    assert os.path.exists(os.path.join(REPO, module)), module
    for test in tests:
      assert os.path.exists(os.path.join(REPO, test)), (module, test)


def test_mutation_filters_skip_messages_and_implausible_operators_only():
  tool = _mutation_tool()
  source = ("def f(x):\n  if x > 1:\n    raise ValueError(\n        f'{x - 1}')\n"
            "  warnings.warn(f'{x + 1}')\n  return x * 2\n")
  assert tool.message_lines(source) == {3, 4, 5}
  excluded = re.compile("|".join(f"(?:{e})" for e in tool.EXCLUDED_OPERATORS))
  for name in ("ReplaceBinaryOperator_Mul_LShift", "ReplaceBinaryOperator_Add_BitOr",
               "ReplaceComparisonOperator_Lt_Is", "ReplaceUnaryOperator_USub_Invert",
               "RemoveDecorator"):
    assert excluded.match("core/" + name), name
  for name in ("ReplaceBinaryOperator_Mul_Div", "ReplaceBinaryOperator_BitAnd_BitOr",
               "ReplaceComparisonOperator_GtE_Gt", "ReplaceComparisonOperator_Is_IsNot",
               "ReplaceUnaryOperator_Delete_USub", "ReplaceUnaryOperator_Delete_Invert",
               "NumberReplacer", "AddNot", "ReplaceAndWithOr", "ZeroIterationForLoop"):
    assert not excluded.match("core/" + name), name


OLDER = os.path.join(REPO, "tests", "data", "older_runs")


def test_migrate_results_rewrites_older_runs_once_and_readers_name_it(tmp_path, capsys):
  import shutil
  from focal import components, resume
  from focal.rundir import read_config
  run, sim = tmp_path / "results" / "run", tmp_path / "results" / "sim"
  run.mkdir(parents=True)
  sim.mkdir()
  # A config.json of results/focal_full and one of results/sim as they were before the migration.
  shutil.copy(os.path.join(OLDER, "focal_full_config.json"), run / "config.json")
  shutil.copy(os.path.join(OLDER, "sim_config.json"), sim / "config.json")
  with pytest.raises(resume.Outdated, match=r"model is a scale name.*data has no source.*"
                     rf"python tools/migrate_results.py {re.escape(str(run))}$"):
    read_config(str(run))
  spec = importlib.util.spec_from_file_location("migrate_results",
                                                os.path.join(REPO, "tools", "migrate_results.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  assert tool.main([str(tmp_path / "results")]) == 0
  assert capsys.readouterr().out.splitlines()[-1] == "2 of 2 config.json files were migrating"
  config = read_config(str(run))
  components.validate(config)  # readable and buildable without any compatibility code
  old = json.load(open(os.path.join(OLDER, "focal_full_config.json")))
  assert config.model.scale == old["model"] == "base" and config.data.source == "synthetic"
  assert config.grader.kind == "programmatic" and not config.log.wandb.enabled
  assert config.aggregator.focal.to_dict() == {**components.aggregator_config("focal").focal,
                                               **old["aggregator"]["focal"]}
  assert config.grpo.to_dict() == {**components.grpo_config(), **old["grpo"]}
  assert json.load(open(sim / "config.json"))["config"]["grpo"] == {
      "mu": 1, "eps_low": 0.2, "eps_high": 0.2, "beta": 0.0}
  before = {p: open(p).read() for p in (run / "config.json", sim / "config.json")}
  tool.main([str(tmp_path / "results")])
  assert capsys.readouterr().out.splitlines()[-1] == "0 of 2 config.json files were migrating"
  assert {p: open(p).read() for p in before} == before  # idempotent: left byte for byte
