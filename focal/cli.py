"""Command-line flag aliases shared by the entry points in experiments/.

`--config.model=NAME` set the model scale before `model` became a block (scale, checkpoint,
dtypes); it still does, as `--config.model.scale=NAME`, so documented commands keep working.
"""
from __future__ import annotations

ALIASES = {"--config.model=": "--config.model.scale="}


def expand_aliases(argv: list[str]) -> list[str]:
  out = []
  for arg in argv:
    for old, new in ALIASES.items():
      if arg.startswith(old):
        arg = new + arg[len(old):]
    out.append(arg)
  return out
