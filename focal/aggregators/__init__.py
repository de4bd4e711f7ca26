"""Reward aggregators: per-criterion verdicts [B, G, K] -> one reward per rollout [B, G].

`make(name, **hparams)` builds one by its registered name; see `base` for the interface.
Adding an aggregator is one module in this package with a `@base.register(name)` factory:
every module here is imported below, and `focal.components` derives its config block
(`--config.aggregator.<name>.<hparam>`) from the factory's signature.
"""
import importlib
import pkgutil

from focal.aggregators.base import Aggregator, EmptyState, defaults, make, register, registered

# Importing a module registers its aggregators.
for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Aggregator", "EmptyState", "defaults", "make", "register", "registered"]
