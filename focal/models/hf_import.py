"""Load Llama 3.x / Qwen2 / Qwen3 Hugging Face checkpoints into the NNX Transformer, sharded.

`load_hf_checkpoint(directory, mesh=...)` reads config.json (see `hf_config`), builds the
model's abstract state, and fills every parameter with `jax.make_array_from_callback`: each
device's block is read from the safetensors file(s) tensor by tensor, cast to the parameter
dtype and placed with the NamedSharding that `focal.sharding.param_specs` gives it. Host memory
thus holds at most one block (plus a 16 MB read buffer) beyond the placed result.

HF stores linear weights as [out, in]; ours are [in, out], hence the transposed reads.
"""
from __future__ import annotations

import os

import jax

from focal.models.hf_config import config_from_hf
from focal.models.safetensors_io import TensorInfo, index_directory, read_tensor
from focal.models.transformer import ModelConfig, abstract_model
from focal.partition_rules import named, param_specs
from focal.tokenizers import read_json

CONFIG_FILE = "config.json"


def hf_tensor_name(path: tuple) -> tuple[str, bool]:
  """Our parameter path ('layers', 0, 'attn', 'q_proj', 'kernel') -> (HF name, transposed)."""
  if path == ("embed",):
    return "model.embed_tokens.weight", False
  if path == ("lm_head",):
    return "lm_head.weight", True
  if path == ("final_norm", "scale"):
    return "model.norm.weight", False
  _, i, *rest = path
  prefix = f"model.layers.{i}."
  if rest == ["attn_norm", "scale"]:
    return prefix + "input_layernorm.weight", False
  if rest == ["mlp_norm", "scale"]:
    return prefix + "post_attention_layernorm.weight", False
  module, part, kind = rest  # e.g. attn/q_proj/kernel, attn/q_norm/scale, mlp/up_proj/kernel
  group = "self_attn" if module == "attn" else "mlp"
  return f'{prefix}{group}.{part}.{"bias" if kind == "bias" else "weight"}', kind == "kernel"


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


def read_config(directory: str, *, dtype: str = "float32", param_dtype: str = "float32"
                ) -> ModelConfig:
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}")
  return config_from_hf(read_json(path), dtype=dtype, param_dtype=param_dtype)


def param_shardings(abstract_state, mesh=None):
  """NamedShardings from `focal.partition_rules.param_specs` on `mesh`; the default device if None."""
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda _: device, abstract_state)
  return named(mesh, param_specs(abstract_state, mesh))


def _unused(tensors: dict[str, TensorInfo], used: set[str], config: ModelConfig) -> list[str]:
  # Old checkpoints store RoPE buffers; tied ones sometimes still store the head.
  ignorable = {"lm_head.weight"} if config.tie_embeddings else set()
  return sorted(n for n in set(tensors) - used
                if n not in ignorable and not n.endswith("rotary_emb.inv_freq"))


def _check_tensors(abstract, tensors: dict[str, TensorInfo], config: ModelConfig) -> None:
  """Every parameter's tensor present with its shape, and no tensor left over; before any read."""
  used = set()

  def check(key_path, leaf):
    name, transpose = hf_tensor_name(param_path(key_path))
    if name not in tensors:
      raise ValueError(f"checkpoint is missing tensor {name!r}")
    shape = tensors[name].shape
    if (shape[::-1] if transpose else shape) != leaf.shape:
      expect = leaf.shape[::-1] if transpose else leaf.shape
      raise ValueError(f"tensor {name!r} has shape {shape}, expected {expect}")
    used.add(name)

  jax.tree_util.tree_map_with_path(check, abstract)
  unused = _unused(tensors, used, config)
  if unused:
    raise ValueError(f"checkpoint has tensors the model does not use, e.g. {unused[:3]} "
                     f"({len(unused)} in all): config.json does not describe these weights")


def place_tensors(config: ModelConfig, tensors: dict[str, TensorInfo], mesh=None):
  """(graphdef, state) with every parameter read from `tensors` straight into its sharding.

  Raises ValueError naming a missing, misshaped or unused tensor before reading any.
  """
  graphdef, abstract = abstract_model(config)
  _check_tensors(abstract, tensors, config)

  def load(key_path, leaf, sharding):
    name, transpose = hf_tensor_name(param_path(key_path))
    info = tensors[name]
    return jax.make_array_from_callback(
        leaf.shape, sharding,
        lambda index: read_tensor(info, index, transpose=transpose, dtype=leaf.dtype))

  return graphdef, jax.tree_util.tree_map_with_path(load, abstract,
                                                    param_shardings(abstract, mesh))


def load_hf_checkpoint(directory: str, *, dtype: str = "float32", param_dtype: str = "float32",
                       mesh=None, tokenizer_vocab_size: int | None = None):
  """Load a Llama/Qwen2/Qwen3 HF checkpoint directory: returns (config, graphdef, state).

  dtype: compute dtype; param_dtype: storage dtype of the parameters ('float32' or
  'bfloat16'). mesh: a ('data', 'fsdp', 'tensor') Mesh to shard onto (None: the default device).
  tokenizer_vocab_size: if given, must not exceed the model's vocab_size (ids beyond the embedding
  table cannot be looked up). A larger model vocabulary is accepted, since checkpoints commonly pad
  their embedding rows (Qwen2: 151936 rows for a 151665-token tokenizer).
  """
  config = read_config(directory, dtype=dtype, param_dtype=param_dtype)
  if tokenizer_vocab_size is not None and tokenizer_vocab_size > config.vocab_size:
    raise ValueError(f"tokenizer vocab size {tokenizer_vocab_size} exceeds the model's "
                     f"vocab_size {config.vocab_size} (field 'vocab_size')")
  graphdef, state = place_tensors(config, index_directory(directory), mesh)
  return config, graphdef, state

