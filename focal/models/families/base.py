"""The `Family` record and its registry: config.json's model_type / architectures -> a family.

`from_hf(hf)` is the family a config.json names (import); `of_config(config)` the family a
ModelConfig is written as (export): its `family` field, or for a config that names none (a
scale's) the `infer=True` family whose features it has.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from focal.models.config import ModelConfig
from focal.models.families.layout import LLAMA_LAYOUT, Layout
from focal.partition_rules import TENSOR_RULES, Rules
from focal.registry import Kinds

# The ModelConfig fields a family fixes: config.json does not state them, its model_type does.
FEATURES = ("qkv_bias", "qk_norm")


@dataclasses.dataclass(frozen=True)
class Family:
  """One Hugging Face family of decoder-only models that focal.models.transformer computes.

  Chat templates, stop ids and BOS handling are not here: they come from each checkpoint's own
  tokenizer_config.json / generation_config.json (focal.models.chat), whatever its family.
  """
  model_type: str                 # config.json 'model_type'; the family's registered name
  architectures: tuple[str, ...]  # config.json 'architectures' read as this family; export
  #                                 writes the first
  qkv_bias: bool = False          # biases on the q/k/v projections (ModelConfig.qkv_bias)
  qk_norm: bool = False           # an RMSNorm on each query and key head (ModelConfig.qk_norm)
  default_head_dim: int = 0       # head_dim when config.json has none (0: hidden_size / heads)
  attention_bias_field: bool = True  # config.json's 'attention_bias' means q/k/v/o biases
  #                                 (refused: o_proj has none here); False: the family ignores it
  # More config.json fields that export writes; a callable value gets the ModelConfig.
  hf_fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # Parameter path <-> HF tensor name (focal.models.families.layout).
  tensors: Layout = dataclasses.field(default=LLAMA_LAYOUT, repr=False)
  # Parameter path -> PartitionSpec of a loaded checkpoint (focal.partition_rules).
  partition_rules: Rules = dataclasses.field(default=TENSOR_RULES, repr=False)
  infer: bool = False             # a ModelConfig naming no family, with this family's
  #                                 features, is exported as this family

  def features(self) -> dict[str, Any]:
    return {name: getattr(self, name) for name in FEATURES}

  def config_fields(self, config: ModelConfig) -> dict[str, Any]:
    """`hf_fields` for `config`, callables evaluated."""
    return {k: v(config) if callable(v) else v for k, v in self.hf_fields.items()}


FAMILIES = Kinds("model family", "model family")


def names() -> tuple[str, ...]:
  return FAMILIES.names()


def get(name: str) -> Family:
  return FAMILIES.get(name)


def by_architecture() -> dict[str, Family]:
  return {arch: get(n) for n in names() for arch in get(n).architectures}


def register(family: Family) -> Family:
  """Registers `family` under its model_type; ValueError if a name is taken or missing."""
  if not family.model_type or not family.architectures:
    raise ValueError(f"a family needs a model_type and at least one architecture: {family}")
  if family.model_type in names():
    raise ValueError(f"model family {family.model_type!r} is already registered")
  taken = sorted(set(family.architectures) & set(by_architecture()))
  if taken:
    raise ValueError(f"architecture(s) {taken} already belong to model family "
                     f"{by_architecture()[taken[0]].model_type!r}")
  if family.infer:
    same = [n for n in names() if get(n).infer and get(n).features() == family.features()]
    if same:
      raise ValueError(f"model family {same[0]!r} is already inferred from the features "
                       f"{family.features()}; register {family.model_type!r} with infer=False")
  return FAMILIES.register(family.model_type, family)


def _listing() -> str:
  return ", ".join(f"{n} ({', '.join(get(n).architectures)})" for n in names())


def from_hf(hf: dict) -> Family:
  """The family config.json names by model_type (or, without one, architectures[0]); the two
  must agree when both are given."""
  archs = hf.get("architectures") or []
  model_type = hf.get("model_type")
  known = by_architecture()
  if model_type is not None and model_type not in names():
    raise ValueError(f"unsupported model_type {model_type!r} (config.json field 'model_type'); "
                     f"registered model families: {_listing()}")
  if archs and archs[0] not in known:
    raise ValueError(f"unsupported architecture {archs[0]!r} (config.json field "
                     f"'architectures'); registered model families: {_listing()}")
  if archs and model_type is not None and known[archs[0]].model_type != model_type:
    raise ValueError(f"config.json says model_type {model_type!r} but architectures "
                     f"{archs[0]!r}")
  if model_type is None and not archs:
    raise ValueError("config.json has neither 'model_type' nor 'architectures'")
  return get(model_type) if model_type is not None else known[archs[0]]


def of_config(config: ModelConfig) -> Family:
  """The family `config` is read and written as (ValueError if its features contradict it)."""
  wanted = {name: getattr(config, name) for name in FEATURES}
  if config.family:
    family = get(config.family)
    if family.features() != wanted:
      raise ValueError(f"model family {family.model_type!r} has {family.features()}, the "
                       f"config {wanted}")
    return family
  having = [get(n) for n in names() if get(n).features() == wanted]
  inferred = [f for f in having if f.infer]
  if inferred:
    return inferred[0]
  if having:
    raise ValueError(f"no model family is inferred from the features {wanted}; name one in "
                     f"ModelConfig.family: {', '.join(f.model_type for f in having)}")
  raise ValueError(f"no registered model family has the features {wanted}; registered model "
                   f"families: {_listing()}")
