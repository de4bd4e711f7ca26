"""The grader kinds `config.grader.kind` can name, one `GraderKind` record each.

A kind is registered by the module that implements it (focal/graders/kinds/<kind>.py, imported
at the end of this file), so adding a grader kind, say a reward model, is one module with its
`register(...)` call: its config block `grader.<kind>` is generated from the record
(`focal.components.grader_config`), and the checks, the training and evaluation graders and the
loop's limit on invalid verdicts are all read from it. tests/test_registry.py runs every
registered kind through one contract and adds a kind in a test.

What `make` returns is a grader stage (focal.graders.stage): either `fused` (its jittable `fn`
runs inside the jitted train step) or scored on the host by `score(split, rows, tokens, mask,
group, pitfall_mode) -> (scores [n, G, K], valid [n, G, K], stats)`. A host kind usually
returns `HostGrader(source, client, pitfall_mode)` around a client whose `grade(conversations,
responses, criteria, mask, pitfall_mode)` scores decoded text.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from focal.registry import Kinds


def _accept(config) -> None:
  del config


def like_training(config, source, pitfall_mode: str):
  """The default `make_eval`: evaluation grades like training, and no `eval.<block>` is read."""
  del config, source, pitfall_mode


@dataclasses.dataclass(frozen=True)
class GraderKind:
  """How one `grader.kind` is configured, checked and built."""
  make: Callable[..., Any]      # (section, source, pitfall_mode) -> the grader stage; `section` is
  #                               the config block holding the kind's block: config.grader for
  #                               training, config.eval for an evaluation grader of its own
  in_jit: bool = False          # scores inside the jitted train step, so the data source must
  #                               carry a jittable grader (DataSource.in_jit_grader); else on the
  #                               host between the rollout and the learn step (focal.host_step)
  defaults: Callable[[], dict] | None = None  # () -> fields and defaults of the kind's own block
  #                               `grader.<kind>` (None: it has none)
  check: Callable[[Any], None] = _accept  # (config) -> None; refuses, naming the field, a
  #                               config this kind cannot run, before anything is built
  make_eval: Callable[..., Any] = like_training  # (config, source, pitfall_mode) -> the grader
  #                               evaluation uses, or None: one like the training grader
  invalid_limit: str = ""       # the field of config.grader (dotted) holding the share of
  #                               invalid verdicts above which a training step stops ("": none)


KINDS = Kinds("grader kind", "grader.kind")
register = KINDS.register
get = KINDS.get
names = KINDS.names


def kind_of(config) -> str:
  """`grader.kind`."""
  return config.grader.kind


def of(config) -> GraderKind:
  """The record of the kind `config.grader.kind` names (ValueError listing the registered)."""
  return get(kind_of(config))


def invalid_limit(config) -> tuple[float, str]:
  """(share, the field that sets it) of invalid verdicts above which a training step stops."""
  kind = kind_of(config)
  field = get(kind).invalid_limit
  if not field:
    return 0.0, f"grader.kind={kind} (no invalid verdict is allowed)"
  value = config.grader
  for part in field.split("."):
    value = value.get(part) if value is not None else None
  return (0.0 if value is None else float(value)), f"grader.{field}"


# The built-in kinds register themselves; a new one adds its import here.
from focal.graders.kinds import judge, programmatic, rules  # noqa: E402,F401
