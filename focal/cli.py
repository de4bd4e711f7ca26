"""Command-line helpers shared by the entry points in experiments/: flag aliases, and the
config file's own functions (a sweep's grid, a phase diagram's cells).

`--config.model=NAME` set the model scale before `model` became a block (scale, checkpoint,
dtypes); it still does, as `--config.model.scale=NAME`, so documented commands keep working.
"""
from __future__ import annotations

import importlib.util

ALIASES = {"--config.model=": "--config.model.scale="}


def expand_aliases(argv: list[str]) -> list[str]:
  out = []
  for arg in argv:
    for old, new in ALIASES.items():
      if arg.startswith(old):
        arg = new + arg[len(old):]
    out.append(arg)
  return out


def config_module(config_flag):
  """(the module of `--config=FILE[:ARG]`, ARG or None), for the file's functions beside
  get_config (get_sweep, get_grid). `config_flag` is FLAGS["config"]."""
  from ml_collections import config_flags
  return load_config_file(config_flags.get_config_filename(config_flag))


def load_config_file(spec: str):
  """(the module of a config file "FILE[:ARG]", ARG or None), without calling get_config."""
  file, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("focal_config_file", file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module, arg or None
