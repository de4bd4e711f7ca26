"""Load Llama- or Qwen2-format Hugging Face checkpoints into the NNX Transformer.

A checkpoint directory holds `config.json` and either `model.safetensors` or a sharded set
indexed by `model.safetensors.index.json`. Safetensors are read with numpy only (the format is an
8-byte little-endian header length, a JSON header of {name: {dtype, shape, data_offsets}}, then the
raw little-endian tensor bytes), so importing needs neither torch nor the `safetensors` package.

HF stores linear weights as [out, in]; ours are [in, out], hence the transposes.
"""
from __future__ import annotations

import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np

from focal.models.transformer import ModelConfig, abstract_model

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")

_NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                 "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
  # bfloat16 is the top half of a float32: widen the bits and reinterpret.
  return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Read every tensor of a .safetensors file into numpy (bfloat16 is widened to float32)."""
  with open(path, "rb") as f:
    data = f.read()
  if len(data) < 8:
    raise ValueError(f"{path}: too short to be a safetensors file")
  (header_len,) = struct.unpack("<Q", data[:8])
  if 8 + header_len > len(data):
    raise ValueError(f"{path}: header length {header_len} exceeds the file size")
  header = json.loads(data[8:8 + header_len])
  body = memoryview(data)[8 + header_len:]
  tensors = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    if dtype == "BF16":
      arr = _bf16_to_f32(np.frombuffer(body[start:end], dtype="<u2"))
    elif dtype in _NUMPY_DTYPES:
      arr = np.frombuffer(body[start:end], dtype=np.dtype(_NUMPY_DTYPES[dtype]).newbyteorder("<"))
    else:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
    if arr.size != int(np.prod(shape)):
      raise ValueError(f"{path}: tensor {name!r} holds {arr.size} values, header says {shape}")
    tensors[name] = arr.reshape(shape)
  return tensors


def read_checkpoint_tensors(directory: str) -> dict[str, np.ndarray]:
  """All tensors of a checkpoint directory (single file or sharded with an index)."""
  single = os.path.join(directory, "model.safetensors")
  if os.path.exists(single):
    return read_safetensors(single)
  index = os.path.join(directory, "model.safetensors.index.json")
  if not os.path.exists(index):
    raise ValueError(f"{directory}: no model.safetensors or model.safetensors.index.json")
  with open(index) as f:
    shards = sorted(set(json.load(f)["weight_map"].values()))
  tensors = {}
  for shard in shards:
    tensors.update(read_safetensors(os.path.join(directory, shard)))
  return tensors


def _rope_theta(hf: dict) -> float:
  """rope_theta from either the flat field (transformers<5) or `rope_parameters` (>=5)."""
  params = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling") or {}
  for spec in (params, scaling):
    kind = spec.get("rope_type", spec.get("type", "default"))
    if kind != "default":
      raise ValueError(f"unsupported RoPE scaling type {kind!r} (field rope_scaling/rope_parameters)")
  return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict, *, dtype: str = "float32") -> ModelConfig:
  """Translate a Llama/Qwen2 `config.json` dict into a ModelConfig; ValueError names bad fields."""
  archs = hf.get("architectures") or []
  arch = archs[0] if archs else None
  if arch not in SUPPORTED_ARCHITECTURES:
    raise ValueError(f"unsupported architecture {arch!r} (field 'architectures'); "
                     f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    raise ValueError(f"unsupported activation {act!r} (field 'hidden_act'); only 'silu'")
  if arch == "Qwen2ForCausalLM" and hf.get("use_sliding_window", False):
    raise ValueError("sliding-window attention is not supported (field 'use_sliding_window')")
  if arch == "LlamaForCausalLM" and hf.get("mlp_bias", False):
    raise ValueError("MLP bias is not supported (field 'mlp_bias')")
  for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size"):
    if field not in hf:
      raise ValueError(f"config.json is missing field {field!r}")
  n_heads = hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or hf["hidden_size"] // n_heads
  return ModelConfig(
      vocab_size=hf["vocab_size"],
      d_model=hf["hidden_size"],
      n_layers=hf["num_hidden_layers"],
      n_heads=n_heads,
      n_kv_heads=hf.get("num_key_value_heads") or n_heads,
      head_dim=head_dim,
      d_ff=hf["intermediate_size"],
      rope_theta=_rope_theta(hf),
      rms_eps=float(hf.get("rms_norm_eps", 1e-6)),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      # Qwen2 always has q/k/v bias; Llama has it only with attention_bias (then o_proj too,
      # which we do not model, so reject it).
      qkv_bias=arch == "Qwen2ForCausalLM" or _llama_attention_bias(hf),
      dtype=dtype,
      max_seq_len=int(hf.get("max_position_embeddings", 2048)),
  )


def _llama_attention_bias(hf: dict) -> bool:
  if hf.get("attention_bias", False):
    raise ValueError("Llama attention_bias=True (bias on o_proj too) is not supported "
                     "(field 'attention_bias')")
  return False


def _hf_name_and_transform(path: tuple) -> tuple[str, bool]:
  """Map one of our parameter paths to (HF tensor name, whether to transpose)."""
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
  module, proj, kind = rest
  group = "self_attn" if module == "attn" else "mlp"
  return f'{prefix}{group}.{proj}.{"weight" if kind == "kernel" else "bias"}', kind == "kernel"


def _path_names(key_path) -> tuple:
  names = []
  for k in key_path:
    if isinstance(k, jax.tree_util.DictKey):
      names.append(k.key)
    elif isinstance(k, jax.tree_util.SequenceKey):
      names.append(k.idx)
    elif isinstance(k, jax.tree_util.GetAttrKey) and k.name != "value":
      names.append(k.name)
  return tuple(names)


def state_from_hf_tensors(config: ModelConfig, tensors: dict[str, np.ndarray]):
  """Fill the model's params state from HF-named tensors: returns (graphdef, state).

  Raises ValueError naming the tensor when one is missing or has the wrong shape.
  """
  graphdef, abstract = abstract_model(config)

  def load(key_path, leaf):
    name, transpose = _hf_name_and_transform(_path_names(key_path))
    if name not in tensors:
      raise ValueError(f"checkpoint is missing tensor {name!r}")
    arr = tensors[name].T if transpose else tensors[name]
    if arr.shape != leaf.shape:
      shown = arr.shape[::-1] if transpose else arr.shape
      expect = leaf.shape[::-1] if transpose else leaf.shape
      raise ValueError(f"tensor {name!r} has shape {shown}, expected {expect}")
    return jnp.asarray(arr, dtype=leaf.dtype)

  return graphdef, jax.tree_util.tree_map_with_path(load, abstract)


def load_hf_checkpoint(directory: str, *, dtype: str = "float32",
                       tokenizer_vocab_size: int | None = None):
  """Load a Llama/Qwen2 HF checkpoint directory: returns (config, graphdef, state).

  tokenizer_vocab_size: if given, must not exceed the model's vocab_size (ids beyond the embedding
  table cannot be looked up). A larger model vocabulary is accepted, since checkpoints commonly pad
  their embedding rows (Qwen2: 151936 rows for a 151665-token tokenizer).
  """
  with open(os.path.join(directory, "config.json")) as f:
    config = config_from_hf(json.load(f), dtype=dtype)
  if tokenizer_vocab_size is not None and tokenizer_vocab_size > config.vocab_size:
    raise ValueError(f"tokenizer vocab size {tokenizer_vocab_size} exceeds the model's "
                     f"vocab_size {config.vocab_size} (field 'vocab_size')")
  graphdef, state = state_from_hf_tensors(config, read_checkpoint_tensors(directory))
  return config, graphdef, state
