"""Low-rank adapters (LoRA, Hu et al. 2021) beside the transformer's stacked projection kernels.

A targeted `Linear` whose kernel W is [n_layers, d_in, d_out] (the scanned layers keep every
layer's parameters stacked) gets A [n_layers, d_in, r] and B [n_layers, r, d_out] as
`LoRAParam`s and computes x W + (alpha / r) (x A) B inside the scanned block; B starts at zero,
so the adapted model equals the base before its first update. A is drawn as peft draws it
(Kaiming-uniform, bound 1 / sqrt(d_in)).

A run with `model.lora.rank > 0` keeps two parameter states (`attach`): the frozen base (every
parameter that is not trained, in the compute dtype: loaded once, never in the optimizer and
never checkpointed) and the trainable part (the adapters, and the embedding / LM head with
`train_embeddings`). `combine` puts them back together for the model; `adapters_off` is the base
policy itself (the KL reference, so beta > 0 keeps no second copy); `merge_adapters` folds
W + (alpha / r) A B into the kernels for export.
"""
from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
from flax import nnx

from focal.models.layers import Linear

# The attention and MLP projections of every layer (paths as focal.partition_rules writes them).
DEFAULT_TARGETS = r"layers/(attn/(q|k|v|o)_proj|mlp/(gate|up|down)_proj)/kernel"
EMBEDDINGS = ("embed", "lm_head")


class LoRAParam(nnx.Param):
  """A low-rank adapter factor: trained while the rest of the model is frozen."""


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  """`model.lora` (configs/base.py documents each field)."""
  rank: int = 0
  alpha: float = 32.0
  dropout: float = 0.0
  targets: str = DEFAULT_TARGETS
  train_embeddings: bool = False

  def __post_init__(self):
    if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 0:
      raise ValueError(f"model.lora.rank must be an integer >= 0 (0 = full fine-tuning), got "
                       f"{self.rank!r}")
    if not self.alpha > 0:
      raise ValueError(f"model.lora.alpha must be > 0, got {self.alpha!r}")
    if self.dropout != 0:
      # The single-pass update takes the loss's own forward as the sampling policy's log-probs
      # (focal.update), and the sampler runs without dropout: a dropped-out forward would make
      # the ratio noise rather than 1 at the first step.
      raise ValueError(f"model.lora.dropout must be 0 (GRPO's ratio compares the forward with "
                       f"the sampler's, which has no dropout), got {self.dropout!r}")
    try:
      re.compile(self.targets)
    except re.error as e:
      raise ValueError(f"model.lora.targets is not a regular expression: {e}") from None

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


def from_fields(block) -> LoRAConfig:
  """The LoRAConfig of a config's `model.lora` block (a mapping)."""
  return LoRAConfig(**dict(block))


def targeted(model: nnx.Module, targets: str) -> list[tuple[str, Linear]]:
  """(kernel path, Linear) of every Linear whose kernel's path fully matches `targets`."""
  found = []
  for path, node in nnx.iter_graph(model):
    name = "/".join(str(p) for p in path) + "/kernel"
    if isinstance(node, Linear) and re.fullmatch(targets, name):
      found.append((name, node))
  if not found:
    raise ValueError(f"model.lora.targets={targets!r} matches no projection kernel (paths look "
                     f"like 'layers/attn/q_proj/kernel')")
  return sorted(found, key=lambda x: x[0])


def add_adapters(model: nnx.Module, lora: LoRAConfig, rng: jax.Array) -> list[str]:
  """Attaches A and B (float32) to every targeted Linear of `model`; returns their kernel paths."""
  found = targeted(model, lora.targets)
  for (name, linear), key in zip(found, jax.random.split(rng, len(found))):
    *lead, d_in, d_out = linear.kernel.shape
    bound = 1.0 / d_in ** 0.5
    linear.lora_a = LoRAParam(jax.random.uniform(key, (*lead, d_in, lora.rank), jnp.float32,
                                                 -bound, bound))
    linear.lora_b = LoRAParam(jnp.zeros((*lead, lora.rank, d_out), jnp.float32))
    linear.lora_scale = lora.scale
  return [name for name, _ in found]


def trainable_filter(lora: LoRAConfig):
  if lora.train_embeddings:
    return nnx.Any(LoRAParam, *(nnx.PathContains(name) for name in EMBEDDINGS))
  return LoRAParam


def _cast(x, dtype):
  if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype == dtype:
    return x
  if isinstance(x, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(x.shape, dtype, sharding=x.sharding)
  return x.astype(dtype)


def attach(lora: LoRAConfig, graphdef: nnx.GraphDef, params: nnx.State, rng: jax.Array):
  """(graphdef, base, trainable) of a policy with adapters; rank 0: (graphdef, None, params).

  The base is the frozen rest, cast to the compute dtype (the forward casts it so anyway).
  """
  if not lora.rank:
    return graphdef, None, params
  model = nnx.merge(graphdef, params)
  add_adapters(model, lora, rng)
  graphdef, trainable, base = nnx.split(model, trainable_filter(lora), ...)
  dtype = model.cfg.compute_dtype
  return graphdef, jax.tree.map(lambda x: _cast(x, dtype), base), trainable


def combine(base: nnx.State | None, trainable: nnx.State) -> nnx.State:
  """The whole parameter state the model reads (`trainable` itself when there is no base)."""
  return trainable if base is None else nnx.merge_state(base, trainable)


def frozen_copy(trainable: nnx.State, copy) -> nnx.State | None:
  """`copy` of the trainable leaves that are not adapters (the embeddings with
  `train_embeddings`): what a reference needs beyond the base; None when there are none."""
  rest = nnx.filter_state(trainable, nnx.Not(LoRAParam))
  return jax.tree.map(copy, rest) if jax.tree.leaves(rest) else None


def _is_adapter(path, _) -> bool:
  return any(str(getattr(k, "key", k)) == "lora_b" for k in path)


def adapters_off(params: nnx.State) -> nnx.State:
  """`params` with every B zero: the base policy's own function, exactly (x W + 0)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.zeros_like(x) if _is_adapter(path, x) else x, params)


def merge_adapters(graphdef: nnx.GraphDef, params: nnx.State) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, params) of the same function with W + (alpha / r) A B in each adapted kernel and
  no adapters: the architecture of the rank-0 model (what a Hugging Face export holds). The
  kernels keep the base's dtype; the sum is formed in float32."""
  model = nnx.merge(graphdef, params)
  adapted = [node for _, node in nnx.iter_graph(model)
             if isinstance(node, Linear) and node.lora_a is not None]
  for node in adapted:
    kernel = node.kernel[...]
    delta = jnp.einsum("...ir,...ro->...io", node.lora_a[...].astype(jnp.float32),
                       node.lora_b[...].astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    node.kernel = nnx.Param((kernel.astype(jnp.float32) + node.lora_scale * delta)
                            .astype(kernel.dtype))
    node.lora_a = node.lora_b = None
    node.lora_scale = 0.0
  return nnx.split(model)


def count(tree) -> int:
  """Number of scalars in a parameter state."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))
