"""Partition rules: every parameter of the model -> a PartitionSpec.

Parameters. `param_specs` maps every parameter to a PartitionSpec in two passes:
  1. tensor rules, big_vision style: an ordered list of (regex, PartitionSpec)
     matched with `re.fullmatch` against the '/'-joined nnx state path
     ('layers/attn/q_proj/kernel'); the first match wins and a parameter no
     rule matches is an error (a new module should be placed deliberately).
     Parameters under 'layers/' are stacked over the layers (a leading
     [n_layers] axis, scanned by the model): a rule gives the spec of one
     layer's array, and the layer axis stays unsharded, so that every device
     holds its share of every layer and the scan slices locally.
     `TENSOR_RULES` makes q/k/v and gate/up column-parallel (output dim over
     'tensor'), o/down row-parallel (input dim over 'tensor'), and shards the
     embedding over the vocabulary, so the tied LM head yields vocab-parallel
     logits that log_softmax reduces with one all-reduce.
  2. FSDP: if the mesh has an 'fsdp' axis of size > 1, 'fsdp' goes on the
     largest dimension that the rule left free and that it divides, for every
     parameter with at least `fsdp_min_size` elements (all-gathering a tiny
     vector costs more latency than the memory it saves); for a stacked
     parameter, of one layer's array.
A dimension the rule's axes do not divide (vocabulary 260 over tensor=8, say)
is replicated along that dimension rather than refused, because scales and
meshes vary independently and a replicated dim is still correct; pass
`strict=True` to raise instead.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

Rules = Sequence[tuple[str, P]]

TENSOR_RULES: Rules = (
    (r"embed", P("tensor", None)),
    (r"lm_head", P(None, "tensor")),
    (r"layers/attn/(q|k|v)_proj/kernel", P(None, "tensor")),
    (r"layers/attn/(q|k|v)_proj/bias", P("tensor")),
    (r"layers/attn/o_proj/kernel", P("tensor", None)),
    (r"layers/mlp/(gate|up)_proj/kernel", P(None, "tensor")),
    (r"layers/mlp/down_proj/kernel", P("tensor", None)),
    (r".*norm/scale", P()),
    # LoRA adapters (focal.models.lora): x A B splits like x W. Column-parallel W: B's output
    # dim over 'tensor'; row-parallel W: A's input dim; the rank dim is never split.
    (r"layers/(attn/(q|k|v)_proj|mlp/(gate|up)_proj)/lora_b", P(None, "tensor")),
    (r"layers/(attn/o_proj|mlp/down_proj)/lora_a", P("tensor", None)),
    (r"layers/.*/lora_(a|b)", P()),
)

# Replicates everything, then lets the FSDP pass shard it: pure FSDP.
REPLICATED_RULES: Rules = ((r".*", P()),)

FSDP_MIN_SIZE = 2 ** 12
STACKED = "layers/"  # parameters under this prefix have a leading, never sharded, layer axis


def path_str(path: Iterable[Any]) -> str:
  """'/'-joined names of a key path, without nnx's trailing '.value' attribute."""
  names = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      names.append(str(key.key))
    elif isinstance(key, jax.tree_util.SequenceKey):
      names.append(str(key.idx))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      names.append(key.name)
    else:
      names.append(str(key))
  if names and names[-1] == "value":
    names.pop()
  return "/".join(names)


def match_rule(path: str, rules: Rules) -> P:
  """The spec of the first rule whose regex fully matches `path`."""
  for pattern, spec in rules:
    if re.fullmatch(pattern, path):
      return spec
  raise ValueError(f"no partition rule matches parameter {path!r}; rules: "
                   f"{[pattern for pattern, _ in rules]}")


def axis_size(axis_sizes, axes) -> int:
  if axes is None:
    return 1
  axes = axes if isinstance(axes, tuple) else (axes,)
  return math.prod(axis_sizes[a] for a in axes)


def fit_spec(spec: P, shape: Sequence[int], axis_sizes, path: str = "", strict: bool = False) -> P:
  """`spec` padded to len(shape), with axes that do not divide their dimension dropped.

  Raises ValueError under `strict` instead of dropping, or when the spec has
  more entries than the array has dimensions.
  """
  entries = list(spec)
  if len(entries) > len(shape):
    raise ValueError(f"{path}: spec {spec} has {len(entries)} entries for shape {tuple(shape)}")
  entries += [None] * (len(shape) - len(entries))
  for dim, axes in enumerate(entries):
    size = axis_size(axis_sizes, axes)
    if shape[dim] % size:
      if strict:
        raise ValueError(f"{path}: dimension {dim} of shape {tuple(shape)} does not divide "
                         f"mesh axes {axes} of size {size}")
      entries[dim] = None
  return P(*entries)


def add_fsdp(spec: P, shape: Sequence[int], axis_sizes, min_size: int = FSDP_MIN_SIZE) -> P:
  """`spec` with 'fsdp' on the largest free dimension it divides (unchanged if none does)."""
  n = dict(axis_sizes).get("fsdp", 1)
  if n <= 1 or math.prod(shape) < min_size:
    return spec
  entries = list(spec) + [None] * (len(shape) - len(spec))
  free = [d for d, axes in enumerate(entries) if axes is None and shape[d] % n == 0]
  if not free:
    return spec
  # Ties go to the earlier dimension so that the choice is stable across runs.
  dim = max(free, key=lambda d: (shape[d], -d))
  entries[dim] = "fsdp"
  return P(*entries)


def param_specs(params, mesh, rules: Rules = TENSOR_RULES, fsdp_min_size: int = FSDP_MIN_SIZE,
                strict: bool = False):
  """A tree of PartitionSpecs like `params` (arrays or ShapeDtypeStructs).

  `mesh` is a Mesh or an AbstractMesh (only its axis sizes are read, so specs
  for a pod can be computed on a laptop).
  """
  sizes = dict(mesh.shape)

  def spec_of(path, leaf):
    name = path_str(path)
    stacked = name.startswith(STACKED)
    shape = leaf.shape[1:] if stacked else leaf.shape
    spec = fit_spec(match_rule(name, rules), shape, sizes, name, strict)
    spec = add_fsdp(spec, shape, sizes, fsdp_min_size)
    return P(None, *spec) if stacked else spec

  return jax.tree_util.tree_map_with_path(spec_of, params)


def named(mesh, specs):
  """PartitionSpec tree -> NamedSharding tree on `mesh`."""
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                      is_leaf=lambda x: isinstance(x, P))
