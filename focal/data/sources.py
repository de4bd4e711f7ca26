"""The data sources `config.data.source` can name, one `DataSource` record each.

A source is registered by the module that implements it, and `focal/data/__init__.py` imports
those modules, so adding a data source is one module with its `register(...)` call and one
import line there (tests/test_components.py runs every registered source through the same
contract, tests/test_data_sources.py). What `make` returns is read by the loop, evaluation and
the graders through these names (focal.data.synthetic_source and focal.data.rubric_source are
the two built-in shapes of it; B prompts per step, K criterion slots, P prompt tokens):

  batch(step) -> (PromptBatch, rows [B])   a pure function of (seed, step): resumes are exact
  width, num_prompts, max_criteria         P; the prompt-id table size; K
  categories                               category names, indexed by category id
  train_prompts, eval_prompts              (tokens [N, P] int32 left-padded, mask [N, P] bool)
  train_rubric, eval_rubric                RubricBatch [N, K] of every prompt of the split
  train_names, eval_names                  [N, K] criterion names for the logged keys ('' = none)
  size(split), features(split)             prompts of a split; [N, F] what `grade` reads
  judge_inputs(split, rows)                (conversations, criteria lists, mask [n, K]) for judges
  decode_response(tokens [L], mask [L])    a rollout as the text a judge reads
  grade                                    a jittable (features, tokens, mask) -> scores, or None
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from focal.registry import Kinds


def _accept(config, checkpoint: str) -> None:
  del config, checkpoint


@dataclasses.dataclass(frozen=True)
class DataSource:
  """How one `data.source` is built and what it can be trained with."""
  make: Callable[..., Any]      # (config, tokens: focal.policy.Tokens, width | None) -> the source
  check: Callable[[Any, str], None] = _accept  # (config, model checkpoint or "") -> None;
  #                               refuses, naming the field, a config this source cannot run
  in_jit_grader: bool = False   # its prompts carry a jittable grader (grader.kind=programmatic)
  reference_responses: bool = False  # the supervised warm start can imitate its references
  builder: str = ""             # a rubric-file format's TFDS builder, "module:Class" (imported
  #                               on first use, so tensorflow_datasets loads only for such data)


SOURCES = Kinds("data source", "data.source")
register = SOURCES.register
get = SOURCES.get
names = SOURCES.names
