"""Name -> factory registries, so that a config string picks a component.

A factory's keyword defaults are the single source of its hyper-parameters'
defaults: `defaults(name)` reads them from its signature, and
`focal.components` turns them into the config block `--config.<kind>.<name>.<hparam>`.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import jax


class Registry:
  """Factories registered by name; `make(name, **hparams)` builds one.

  Unknown names and hyper-parameters raise ValueError listing the valid ones.
  `register(name, **tags)` attaches tags (e.g. `static=True`) that `names(**tags)`
  filters on.
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._factories: dict[str, Callable[..., Any]] = {}
    self._tags: dict[str, dict[str, Any]] = {}

  def register(self, name: str, **tags):
    """Decorator registering `factory(**hparams)` under `name`."""
    def wrap(factory):
      if name in self._factories:
        raise ValueError(f"{self.kind} {name!r} is already registered")
      for param in inspect.signature(factory).parameters.values():
        if param.default is inspect.Parameter.empty or param.kind != param.POSITIONAL_OR_KEYWORD:
          raise TypeError(f"{self.kind} {name!r}: hyper-parameter {param.name!r} needs a "
                          "default (the default is what a config block starts from)")
      self._factories[name] = factory
      self._tags[name] = dict(tags)
      return factory
    return wrap

  def names(self, sort: bool = True, **tags) -> tuple[str, ...]:
    """Registered names (sorted, or in registration order), optionally only those whose tags
    match, e.g. names(static=True)."""
    chosen = [n for n in self._factories if all(self._tags[n].get(k) == v for k, v in tags.items())]
    return tuple(sorted(chosen) if sort else chosen)

  def factory(self, name: str) -> Callable[..., Any]:
    if name not in self._factories:
      raise ValueError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
    return self._factories[name]

  def defaults(self, name: str) -> dict[str, Any]:
    """{hyper-parameter: default} of `name`'s factory, in signature order."""
    params = inspect.signature(self.factory(name)).parameters
    return {p.name: p.default for p in params.values()}

  def make(self, name: str, **hparams):
    factory = self.factory(name)
    try:
      return factory(**hparams)
    except jax.errors.ConcretizationTypeError:
      raise  # a traced hyper-parameter the factory branches on (focal.sim.engine.lane_hparams_ok)
    except TypeError as e:
      accepted = ", ".join(inspect.signature(factory).parameters)
      raise ValueError(f"bad hyper-parameters for {self.kind} {name!r}: {e}. "
                       f"Accepted: {accepted}") from None


class Kinds:
  """Name -> record, for components a config names but builds from more than hyper-parameters
  (data sources, grader kinds, model families): each record is a frozen dataclass saying how
  to build and check its kind, registered by the module that implements it.

  `get(name)` raises ValueError naming the config field and the registered names.
  """

  def __init__(self, kind: str, field: str):
    self.kind, self.field = kind, field
    self._records: dict[str, Any] = {}

  def register(self, name: str, record):
    if name in self._records:
      raise ValueError(f"{self.kind} {name!r} is already registered")
    self._records[name] = record
    return record

  def get(self, name: str):
    if name not in self._records:
      raise ValueError(f"unknown {self.field} {name!r}; choose from {', '.join(self.names())}")
    return self._records[name]

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(self._records))
