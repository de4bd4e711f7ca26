"""The import graph of `focal/`: no cycle, and no arrow up a floor.

The floors say who may know whom. A module imports modules on its own floor or below, never
above: the model does not know the trainer, the trainer does not know the loop. Imports inside
functions count too (they are still dependencies, only later ones). A submodule importing its
own parent package is not an edge: Python imports the parent first anyway.
"""
from __future__ import annotations

import ast
import collections
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "focal")

# Lowest first. A name is a module or a package (then every module in it).
FLOORS = (
  # foundations: data types and helpers that know nothing of training
  ("focal.rubric", "focal.registry", "focal.tokenizers", "focal.partition_rules", "focal.batch",
   "focal.nonfinite", "focal.grpo", "focal.checkpoint", "focal.tracking", "focal.distributed",
   "focal.cli", "focal.preemption", "focal.microbatch", "focal.run_lock"),
  # the method's and the model's parts
  ("focal.aggregators", "focal.advantages", "focal.models", "focal.tasks", "focal.graders",
   "focal.sampling", "focal.decode_plan", "focal.metrics", "focal.data", "focal.warm_start"),
  # one GRPO iteration, its placement on devices, the policy it trains
  ("focal.iteration", "focal.update", "focal.sharding", "focal.policy", "focal.host_step", "focal.replicas"),
  # a config becomes objects; a run directory; evaluation and the reports that read runs
  ("focal.components", "focal.config_checks", "focal.state_init", "focal.rundir", "focal.recorder",
   "focal.resume", "focal.provenance", "focal.eval_build", "focal.evaluation", "focal.report"),
  # drivers
  ("focal.loop", "focal.sweep", "focal.demo", "focal.sim", "focal.plan"),
)


def modules() -> dict[str, str]:
  found = {}
  for directory, _, files in os.walk(ROOT):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return found


def import_graph() -> dict[str, set[str]]:
  """module -> the focal modules it imports (at any depth of its code)."""
  mods = modules()

  def resolve(name):
    while name and name not in mods:
      name = name.rpartition(".")[0]
    return name

  graph = collections.defaultdict(set)
  for module, path in mods.items():
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{a.name}" for a in node.names] + [base]
      else:
        continue
      for name in names:
        target = resolve(name) if name.startswith("focal") else ""
        if target and target != module and not module.startswith(target + "."):
          graph[module].add(target)
  return graph


def floor_of(module: str) -> int:
  for i, floor in enumerate(FLOORS):
    if any(module == name or module.startswith(name + ".") for name in floor):
      return i
  return -1


def test_every_module_has_a_floor():
  assert [m for m in modules() if m != "focal" and floor_of(m) < 0] == []


def test_no_import_goes_up_a_floor():
  upward = sorted(f"{m} (floor {floor_of(m)}) -> {t} (floor {floor_of(t)})"
                  for m, targets in import_graph().items() for t in targets
                  if m != "focal" and floor_of(t) > floor_of(m))
  assert upward == []


def test_the_import_graph_has_no_cycle():
  graph = import_graph()
  state: dict[str, int] = {}   # 1 = on the current path, 2 = done
  cycles = []

  def visit(node, path):
    state[node] = 1
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        cycles.append(path[path.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert cycles == []


def test_the_checks_see_a_cycle_and_an_upward_arrow(tmp_path, monkeypatch):
  # The two checks above pass on an empty graph too; show they would fail on a bad one.
  pkg = tmp_path / "focal"
  (pkg / "models").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "models" / "__init__.py").write_text("")
  (pkg / "models" / "layers.py").write_text("def f():\n  from focal import loop\n")
  (pkg / "loop.py").write_text("from focal.models import layers\n")
  monkeypatch.setattr(__import__(__name__), "ROOT", str(pkg))
  graph = import_graph()
  assert graph["focal.models.layers"] == {"focal.loop"}
  assert "focal.models.layers" in graph["focal.loop"]
  assert floor_of("focal.loop") > floor_of("focal.models.layers")
  try:
    test_the_import_graph_has_no_cycle()
  except AssertionError:
    pass
  else:
    raise AssertionError("the cycle check missed focal.loop <-> focal.models.layers")
