"""Rubric datasets (TFDS builders over local files) and the loop's data sources.

The builders import tensorflow_datasets; they load on first use, so that code which needs
only a data source (the synthetic suite) does not pay for that import.
"""
import importlib

_LAZY = {
    "Healthbench": "focal.data.healthbench",
    "Rar": "focal.data.rar",
    "RecordError": "focal.data.records",
    "RubricPromptsBuilder": "focal.data.rubric_prompts",
    "build": "focal.data.rubric_prompts",
    "render_chat": "focal.data.rubric_prompts",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'focal.data' has no attribute {name!r}")


# The data sources register themselves (focal.data.sources); a new one adds its import here.
from focal.data import rubric_source, synthetic_source  # noqa: E402,F401
