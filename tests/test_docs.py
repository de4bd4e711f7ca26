"""The README keeps up with the registries: every aggregator has a row in its table, every
advantage estimator is named, and the install and test commands are CI's."""
import os
import re

from focal import advantages, aggregators

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()


def test_readme_table_has_a_row_per_registered_aggregator():
  rows = set(re.findall(r"^\| `(\w+)` \|", README, flags=re.M))
  assert set(aggregators.registered()) <= rows, set(aggregators.registered()) - rows


def test_readme_names_every_advantage_estimator():
  for name in advantages.registered_estimators():
    assert f"`{name}`" in README, name


def test_ci_runs_the_readme_commands():
  ci = open(os.path.join(ROOT, ".ci", "run")).read()
  install = re.search(r"pip install -q (-e \S+ -c constraints.txt)", ci).group(1)
  assert f"pip install {install}" in README.splitlines()[3]
  assert "python -m pytest -q" in ci and "python -m pytest -q" in README.splitlines()[4]
