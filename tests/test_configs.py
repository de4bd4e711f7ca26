"""Every config states only what its preset changes (issue 35: one value per default).

A line of a config file that sets a field to the value the field would have without that line
restates a default (a component's, from its generated block, or the preset it starts from). That
is allowed only with a comment on the line saying the value is the paper's. Each assignment is
checked by leaving it out and rebuilding every config variant that can see it.
"""
from __future__ import annotations

import ast
import functools
import glob
import importlib
import importlib.util
import inspect
import io
import json
import os
import sys
import tokenize
import types
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Reads a run's saved config; it sets nothing.
NOT_PRESETS = ("configs.saved",)


def config_modules() -> list[types.ModuleType]:
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  names = sorted(os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".")
                 for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))
  return [importlib.import_module(n) for n in names
          if not n.endswith("__init__") and n not in NOT_PRESETS]


def _as_json(value):
  if hasattr(value, "to_json_best_effort"):
    return json.loads(value.to_json_best_effort())
  return json.loads(json.dumps(value, default=str, sort_keys=True))


@functools.lru_cache(maxsize=None)
def variant_names() -> list:
  """None and every string a config file compares `arg` with (`arg == "smoke"`, `arg in ("a",
  "b")`), read from the sources, so a new variant is checked without being listed here. Every
  file is tried with all of them: a file may hand `arg` on to the preset it starts from."""
  names = set()
  for module in config_modules():
    names.update(variant_names_of_source(inspect.getsource(module))[1:])
  return [None, *sorted(names)]


def variant_names_of_source(source: str) -> list:
  names = set()
  for node in ast.walk(ast.parse(source)):
    if not isinstance(node, ast.Compare):
      continue
    sides = [node.left, *node.comparators]
    if not any(isinstance(s, ast.Name) and s.id == "arg" for s in sides):
      continue
    for side in sides:
      consts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
      names.update(c.value for c in consts
                   if isinstance(c, ast.Constant) and isinstance(c.value, str))
  return [None, *sorted(names)]


def variants(module) -> dict:
  """{"module.get_x:variant": output as JSON} of each `get_*` function the module defines
  (get_config, get_sweep, get_grid, ...), for every variant it accepts."""
  out = {}
  for name, fn in sorted(vars(module).items()):
    if not (name.startswith("get_") and callable(fn)
            and getattr(fn, "__module__", None) == module.__name__):
      continue
    for arg in variant_names():
      try:
        with warnings.catch_warnings():
          warnings.simplefilter("ignore")
          out[f"{module.__name__}.{name}:{arg}"] = _as_json(fn(arg))
      except (ValueError, TypeError):  # not a variant of this file (or not a preset: judged.py)
        continue
  return out


def _comments(source: str) -> dict[int, str]:
  return {t.start[0]: t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
          if t.type == tokenize.COMMENT}


def _assignments(tree) -> list[tuple[str, ast.Assign]]:
  """(enclosing function, statement) of the assignments to fields (`c.a.b = ...`)."""
  found = []
  for fn in tree.body:
    if isinstance(fn, ast.FunctionDef):
      found += [(fn.name, n) for n in ast.walk(fn) if isinstance(n, ast.Assign)
                and all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in n.targets)]
  return found


def _dependents(module, modules) -> list:
  """`module` and the modules that import it, directly or through another."""
  found, changed = [module], True
  while changed:
    changed = False
    for m in modules:
      if m not in found and any(v in found for v in vars(m).values()):
        found.append(m)
        changed = True
  return found


def restatements(module, modules) -> list[str]:
  """'file:line: text' of each assignment in `module` that changes no config variant and has no
  comment saying the value is the paper's."""
  path = module.__file__
  source = open(path).read()
  lines, comments = source.splitlines(), _comments(source)
  own = variants(module)
  users = _dependents(module, modules)
  every = {k: v for m in users for k, v in variants(m).items()}
  found = []
  for fn, node in _assignments(ast.parse(source)):
    # A preset's get_config and its private helpers reach the files built on it only through
    # the variants it accepts (checked here); any other function (judged.get_config,
    # shrink_real_data_smoke) through the files that call it.
    checked = [module] if (fn == "get_config" or fn.startswith("_")) and own else users
    before = own if checked == [module] else every
    span = range(node.lineno, node.end_lineno + 1)
    if any("paper" in comments.get(i, "").lower() for i in span):
      continue
    ablated = lines[:]
    ablated[node.lineno - 1] = " " * node.col_offset + "pass"
    for i in span[1:]:
      ablated[i - 1] = ""
    exec(compile("\n".join(ablated), path, "exec"), vars(module))
    try:
      after = {k: v for m in checked for k, v in variants(m).items()}
    except Exception:  # noqa: BLE001  (a field the rest of the config reads: needed)
      after = None
    finally:
      exec(compile(source, path, "exec"), vars(module))
    if after == before:
      found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
  return found


def test_no_config_restates_a_default():
  modules = config_modules()
  assert len(modules) > 10
  found = [r for m in modules for r in restatements(m, modules)]
  assert not found, ("these lines set a field to the value it has without them; drop them, or "
                     "say on the line that the value is the paper's:\n" + "\n".join(found))


PLANTED = '''from configs import base


def get_config(arg=None):
  if arg not in (None, "tiny"):
    raise ValueError(arg)
  c = base.get_config()
  c.total_steps = 7  # changes the default: fine
  c.grpo.max_new_tokens = 40
  c.optimizer.grad_clip = 0.5  # the paper's clip
  if arg == "tiny":
    c.data.prompts_per_step = 12
  return c
'''


def test_a_planted_restatement_is_caught(tmp_path):
  path = tmp_path / "planted.py"
  path.write_text(PLANTED)
  spec = importlib.util.spec_from_file_location("planted", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  found = restatements(module, [module])
  # GRPOSettings' default (40), and configs/base.py's prompts_per_step (12) in a preset, restated
  # without a word; the paper's clip says whose it is.
  assert [f.split(": ", 1)[1] for f in found] == ["c.grpo.max_new_tokens = 40",
                                                  "c.data.prompts_per_step = 12"]


def test_variants_are_read_from_each_configs_source():
  """The shipped presets' variants, found without a list: a new variant is checked too."""
  assert variant_names() == [None, "full", "lora", "smoke", "tiny"]
  source = 'def get_config(arg=None):\n  if arg in ("wide", "deep") or arg == "x":\n    pass\n'
  assert variant_names_of_source(source) == [None, "deep", "wide", "x"]
