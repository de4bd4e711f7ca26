"""A LoRA policy's adapters alone, in peft's layout: adapter_model.safetensors + adapter_config.json.

    export_adapters("adapters_out", config, params, lora_config, base="ckpts/qwen")

`peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "adapters_out")`
then computes the trained policy: peft's LoRA layer adds (lora_alpha / r) lora_B(lora_A(x)) to
the base layer, with lora_A.weight [r, in] and lora_B.weight [out, r] in torch's [out, in]
layout, i.e. our A [in, r] and B [r, out] transposed, one tensor per layer of the stack, named
`base_model.model.<the HF name of the adapted weight without .weight>.lora_{A,B}.weight`.
The base is the checkpoint the run started from (`model.checkpoint`), or for a scale's
warm-started base its own export (`experiments.export --peft_out` writes both).
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from focal.models import families
from focal.models.families.layout import LLAMA_LAYOUT, Layout, hf_tensors
from focal.models.hf_export import _prepare
from focal.models.hf_import import param_path
from focal.models.lora import LoRAConfig
from focal.models.safetensors_io import save_arrays
from focal.models.transformer import ModelConfig

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_FACTORS = {"lora_a": "lora_A", "lora_b": "lora_B"}


def adapter_tensors(params, n_layers: int, layout: Layout = LLAMA_LAYOUT) -> dict[str, np.ndarray]:
  """{peft name: float32 array} of every adapter factor in `params` (one per layer), named
  after the adapted weights' HF names in `layout` (the family's `Family.tensors`)."""
  out = {}
  for key_path, leaf in jax.tree_util.tree_leaves_with_path(params):
    path = param_path(key_path)
    if path[-1] not in _FACTORS:
      continue
    names, _, stacked = hf_tensors(path[:-1] + ("kernel",), n_layers, layout)
    for layer, name in enumerate(names):
      arr = np.asarray(jax.device_get(leaf[layer] if stacked else leaf), np.float32)
      stem = name[:-len(".weight")]
      out[f"base_model.model.{stem}.{_FACTORS[path[-1]]}.weight"] = np.ascontiguousarray(arr.T)
  return dict(sorted(out.items()))


def adapter_config(lora: LoRAConfig, tensors: dict, base: str) -> dict:
  """peft's LoraConfig fields for these adapters (every layer of each target module)."""
  modules = sorted({name.split(".")[-3] for name in tensors})
  return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora.rank,
          "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "target_modules": modules,
          "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
          "init_lora_weights": True, "inference_mode": True, "modules_to_save": None,
          "layers_to_transform": None, "base_model_name_or_path": base}


def export_adapters(out_dir: str, config: ModelConfig, params, lora: LoRAConfig, *,
                    base: str = "", overwrite: bool = False) -> list[str]:
  """Write the adapters of `params` (a LoRA policy's whole state) to `out_dir`; returns files.

  base: what adapter_config.json names as the base model (a directory or hub id).
  """
  if not lora.rank:
    raise ValueError("the run has no adapters (model.lora.rank = 0): export the whole model")
  if lora.train_embeddings:
    raise ValueError("model.lora.train_embeddings trained the embedding too, which peft's "
                     "adapter files do not hold here: export the merged checkpoint instead")
  tensors = adapter_tensors(params, config.n_layers, families.of_config(config).tensors)
  if not tensors:
    raise ValueError("no adapter in the parameters")
  partial = _prepare(out_dir, overwrite)
  save_arrays(os.path.join(partial, ADAPTER_FILE), tensors, metadata={"format": "pt"})
  with open(os.path.join(partial, ADAPTER_CONFIG), "w") as f:
    json.dump(adapter_config(lora, tensors, base), f, indent=2)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.rename(partial, out_dir)
  return [ADAPTER_CONFIG, ADAPTER_FILE]
