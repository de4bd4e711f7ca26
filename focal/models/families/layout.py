"""Tensor layouts: our parameter paths <-> a Hugging Face checkpoint's tensor names.

A layout is an ordered list of (regex, HF name template, transposed), like the partition rules
(focal.partition_rules): the regex is matched with `re.fullmatch` against the '/'-joined path of
a parameter ('layers/attn/q_proj/kernel'), the first match wins, and the template is filled with
the regex's named groups and, for a layer parameter, `layer`. A parameter no rule matches is an
error. Parameters under 'layers/' are stacked over the layers (focal.models.transformer): one
parameter is one HF tensor per layer. `transposed` marks linear weights, which HF stores as
[out, in] and we as [in, out].
"""
from __future__ import annotations

import re
from typing import Sequence

from focal.partition_rules import STACKED

Layout = Sequence[tuple[str, str, bool]]

# Llama's names, which Qwen2 and Qwen3 (and most decoder-only families) share.
LLAMA_LAYOUT: Layout = (
    (r"embed", "model.embed_tokens.weight", False),
    (r"lm_head", "lm_head.weight", True),
    (r"final_norm/scale", "model.norm.weight", False),
    (r"layers/attn_norm/scale", "model.layers.{layer}.input_layernorm.weight", False),
    (r"layers/mlp_norm/scale", "model.layers.{layer}.post_attention_layernorm.weight", False),
    (r"layers/attn/(?P<part>\w+)/kernel", "model.layers.{layer}.self_attn.{part}.weight", True),
    (r"layers/attn/(?P<part>\w+)/bias", "model.layers.{layer}.self_attn.{part}.bias", False),
    (r"layers/attn/(?P<part>\w+)/scale", "model.layers.{layer}.self_attn.{part}.weight", False),
    (r"layers/mlp/(?P<part>\w+)/kernel", "model.layers.{layer}.mlp.{part}.weight", True),
)


def hf_tensor_name(path: tuple, layer: int | None = None,
                   layout: Layout = LLAMA_LAYOUT) -> tuple[str, bool]:
  """Our parameter path -> (HF name, transposed).

  A layer parameter ('layers', 'attn', 'q_proj', 'kernel') is stacked over the layers: `layer`
  picks the HF tensor of one of them (model.layers.{layer}.self_attn.q_proj.weight).
  """
  joined = "/".join(str(p) for p in path)
  if joined.startswith(STACKED) == (layer is not None):
    for pattern, template, transposed in layout:
      match = re.fullmatch(pattern, joined)
      if match:
        return template.format(layer=layer, **match.groupdict()), transposed
  raise ValueError(f"no Hugging Face tensor for parameter {path} (layer {layer})")


def hf_tensors(path: tuple, n_layers: int,
               layout: Layout = LLAMA_LAYOUT) -> tuple[list[str], bool, bool]:
  """(HF names, transposed, stacked) of a parameter: one name, or one per layer for a stacked
  layer parameter (its leading axis)."""
  if "/".join(str(p) for p in path).startswith(STACKED):
    names = [hf_tensor_name(path, i, layout)[0] for i in range(n_layers)]
    return names, hf_tensor_name(path, 0, layout)[1], True
  name, transpose = hf_tensor_name(path, None, layout)
  return [name], transpose, False
