"""Load Hugging Face checkpoints of the registered families (Llama 3.x, Qwen2, Qwen3, ...:
focal.models.families) into the NNX Transformer, sharded.

`load_hf_checkpoint(directory, mesh=...)` reads config.json (see `hf_config`), builds the
model's abstract state, and fills every parameter with `jax.make_array_from_callback`: each
device's block is read from the safetensors file(s) tensor by tensor (named by the family's
tensor layout), cast to the parameter dtype and placed with the NamedSharding that
`focal.partition_rules.param_specs` gives it under the family's partition rules. A
layer parameter is stacked over the layers (focal.models.transformer): its block is filled
from the layers' tensors one after the other. Host memory thus holds at most one block (plus a
16 MB read buffer) beyond the placed result.

HF stores linear weights as [out, in]; ours are [in, out], hence the transposed reads.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from focal.models import families
from focal.models.families.layout import LLAMA_LAYOUT, Layout, hf_tensors
from focal.models.hf_config import config_from_hf
from focal.models.safetensors_io import TensorInfo, index_directory, read_tensor
from focal.models.transformer import ModelConfig, abstract_model
from focal.partition_rules import TENSOR_RULES, Rules, named, param_specs
from focal.tokenizers import read_json

CONFIG_FILE = "config.json"


def param_path(key_path) -> tuple:
  """An nnx state key path as plain names and indices (without the trailing 'value')."""
  names = []
  for k in key_path:
    if isinstance(k, jax.tree_util.DictKey):
      names.append(k.key)
    elif isinstance(k, jax.tree_util.SequenceKey):
      names.append(k.idx)
    elif isinstance(k, jax.tree_util.GetAttrKey) and k.name != "value":
      names.append(k.name)
  return tuple(names)


def read_config(directory: str, *, dtype: str = "float32", param_dtype: str = "float32",
                **compute) -> ModelConfig:
  """The ModelConfig of a checkpoint's config.json (compute: see `config_from_hf`)."""
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}")
  return config_from_hf(read_json(path), dtype=dtype, param_dtype=param_dtype, **compute)


def param_shardings(abstract_state, mesh=None, rules: Rules = TENSOR_RULES):
  """NamedShardings from `focal.partition_rules.param_specs` on `mesh`; the default device if None."""
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda _: device, abstract_state)
  return named(mesh, param_specs(abstract_state, mesh, rules))


def _unused(tensors: dict[str, TensorInfo], used: set[str], config: ModelConfig) -> list[str]:
  # Old checkpoints store RoPE buffers; tied ones sometimes still store the head.
  ignorable = {"lm_head.weight"} if config.tie_embeddings else set()
  return sorted(n for n in set(tensors) - used
                if n not in ignorable and not n.endswith("rotary_emb.inv_freq"))


def hf_shapes(abstract, n_layers: int, layout: Layout = LLAMA_LAYOUT) -> dict[str, tuple[int, ...]]:
  """{HF tensor name: shape as stored} of every tensor a model state (or its abstract state)
  corresponds to, in the state's order; `layout`: the family's (`Family.tensors`)."""
  shapes = {}

  def visit(key_path, leaf):
    names, transpose, stacked = hf_tensors(param_path(key_path), n_layers, layout)
    shape = tuple(leaf.shape[1:] if stacked else leaf.shape)
    for name in names:
      shapes[name] = shape[::-1] if transpose else shape

  jax.tree_util.tree_map_with_path(visit, abstract)
  return shapes


def _check_tensors(abstract, tensors: dict[str, TensorInfo], config: ModelConfig) -> None:
  """Every parameter's tensor present with its shape, and no tensor left over; before any read."""
  expected = hf_shapes(abstract, config.n_layers, families.of_config(config).tensors)
  for name, shape in expected.items():
    if name not in tensors:
      raise ValueError(f"checkpoint is missing tensor {name!r}")
    if tensors[name].shape != shape:
      raise ValueError(f"tensor {name!r} has shape {tensors[name].shape}, expected {shape}")
  unused = _unused(tensors, set(expected), config)
  if unused:
    raise ValueError(f"checkpoint has tensors the model does not use, e.g. {unused[:3]} "
                     f"({len(unused)} in all): config.json does not describe these weights")


def _reader(infos: list[TensorInfo], transpose: bool, stacked: bool, dtype):
  """index -> the block `index` of the parameter, read from its tensor(s) in place."""
  def read(index):
    if not stacked:
      return read_tensor(infos[0], index, transpose=transpose, dtype=dtype)
    index = tuple(index) + (slice(None),) * (1 + len(infos[0].shape) - len(tuple(index)))
    layers = range(len(infos))[index[0]]
    shape = infos[0].shape[::-1] if transpose else infos[0].shape
    block = tuple(len(range(n)[s]) for s, n in zip(index[1:], shape))
    out = np.empty((len(layers), *block), dtype)
    for j, layer in enumerate(layers):  # each layer's tensor straight into its slot
      read_tensor(infos[layer], index[1:], transpose=transpose, out=out[j])
    return out
  return read


def place_tensors(config: ModelConfig, tensors: dict[str, TensorInfo], mesh=None):
  """(graphdef, state) with every parameter read from `tensors` straight into its sharding.

  Raises ValueError naming a missing, misshaped or unused tensor before reading any.
  """
  family = families.of_config(config)
  graphdef, abstract = abstract_model(config)
  _check_tensors(abstract, tensors, config)

  def load(key_path, leaf, sharding):
    names, transpose, stacked = hf_tensors(param_path(key_path), config.n_layers, family.tensors)
    read = _reader([tensors[n] for n in names], transpose, stacked, leaf.dtype)
    return jax.make_array_from_callback(leaf.shape, sharding, read)

  shardings = param_shardings(abstract, mesh, family.partition_rules)
  return graphdef, jax.tree_util.tree_map_with_path(load, abstract, shardings)


def load_hf_checkpoint(directory: str, *, dtype: str = "float32", param_dtype: str = "float32",
                       mesh=None, tokenizer_vocab_size: int | None = None, **compute):
  """Load a registered family's HF checkpoint directory: returns (config, graphdef, state).

  dtype: compute dtype; param_dtype: storage dtype of the parameters ('float32' or
  'bfloat16'). mesh: a ('data', 'fsdp', 'tensor') Mesh to shard onto (None: the default device).
  tokenizer_vocab_size: if given, must not exceed the model's vocab_size (ids beyond the embedding
  table cannot be looked up). A larger model vocabulary is accepted, since checkpoints commonly pad
  their embedding rows (Qwen2: 151936 rows for a 151665-token tokenizer).
  compute: ModelConfig's remat, attention, logits_chunk (see `config_from_hf`).
  """
  config = read_config(directory, dtype=dtype, param_dtype=param_dtype, **compute)
  if tokenizer_vocab_size is not None and tokenizer_vocab_size > config.vocab_size:
    raise ValueError(f"tokenizer vocab size {tokenizer_vocab_size} exceeds the model's "
                     f"vocab_size {config.vocab_size} (field 'vocab_size')")
  graphdef, state = place_tensors(config, index_directory(directory), mesh)
  return config, graphdef, state

