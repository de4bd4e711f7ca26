"""focal.models.families: the contract every registered model family meets (whoever registered
it: tests/test_family_example.py adds one), the registry's refusals, and each family's tensor
layout round-tripping a tiny random model through export and import."""
import dataclasses
import json
import re

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from focal.models import families
from focal.models.config import ModelConfig
from focal.models.families.layout import hf_tensors
from focal.models.hf_export import export_checkpoint
from focal.models.hf_import import hf_shapes, load_hf_checkpoint, param_path
from focal.models.transformer import abstract_model
from focal.partition_rules import param_specs, path_str
from focal.registry import Kinds
from hf_export_models import seeded_params

TINY = dict(vocab_size=260, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8,
            d_ff=24, max_seq_len=32, tie_embeddings=False)  # untied: lm_head is mapped too


def tiny_config(family: families.Family) -> ModelConfig:
  return ModelConfig(**TINY, **family.features(), family=family.model_type)


def test_every_record_is_complete():
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  assert set(families.FEATURES) <= fields
  mesh = jax.sharding.AbstractMesh((1, 2, 2), ("data", "fsdp", "tensor"))
  for name in families.names():
    family = families.get(name)
    assert family.model_type == name and family.architectures, name
    assert all(isinstance(a, str) and a for a in family.architectures), name
    assert all(isinstance(v, bool) for v in family.features().values()), name
    assert not {"architectures", "model_type"} & set(family.hf_fields), name
    for pattern, template, transposed in family.tensors:
      re.compile(pattern)
      assert isinstance(template, str) and isinstance(transposed, bool), (name, pattern)
    _, abstract = abstract_model(tiny_config(family))
    specs = param_specs(abstract, mesh, family.partition_rules)  # raises on an unplaced one
    flat = {path_str(p): s for p, s in jax.tree_util.tree_leaves_with_path(
        specs, is_leaf=lambda x: isinstance(x, P))}
    for norm in ("q_norm", "k_norm") if family.qk_norm else ():  # tiny: replicated
      assert flat[f"layers/attn/{norm}/scale"] == P(None, None), name
    # Every parameter (every layer of a stacked one) has its own HF tensor.
    count = sum(len(hf_tensors(param_path(p), TINY["n_layers"], family.tensors)[0])
                for p, _ in jax.tree_util.tree_leaves_with_path(abstract))
    assert len(hf_shapes(abstract, TINY["n_layers"], family.tensors)) == count, name


def test_names_are_unique():
  archs = [a for n in families.names() for a in families.get(n).architectures]
  assert len(archs) == len(set(archs))
  llama = families.get("llama")
  with pytest.raises(ValueError, match="'llama' is already registered"):
    families.register(dataclasses.replace(llama, architectures=("OtherForCausalLM",)))
  with pytest.raises(ValueError, match=r"\['LlamaForCausalLM'\] already belong to .*'llama'"):
    families.register(dataclasses.replace(llama, model_type="llama_copy"))
  with pytest.raises(ValueError, match="'llama' is already inferred"):
    families.register(dataclasses.replace(llama, model_type="x", architectures=("XForCausalLM",)))
  assert "llama_copy" not in families.names() and "x" not in families.names()


def test_unknown_names_raise_listing_the_registered_ones():
  with pytest.raises(ValueError) as arch:
    families.from_hf({"architectures": ["GPTNeoXForCausalLM"]})
  with pytest.raises(ValueError) as model_type:
    families.from_hf({"model_type": "gpt_neox"})
  with pytest.raises(ValueError) as field:
    families.of_config(ModelConfig(**TINY, family="gpt_neox"))
  for name in families.names():
    assert families.get(name).architectures[0] in str(arch.value)
    assert name in str(model_type.value) and name in str(field.value)
  assert "'GPTNeoXForCausalLM'" in str(arch.value)


def test_a_config_is_checked_against_its_family():
  with pytest.raises(ValueError, match="model family 'qwen3' has .*'qk_norm': True"):
    families.of_config(ModelConfig(**TINY, family="qwen3"))
  with pytest.raises(ValueError, match="no registered model family has the features"):
    families.of_config(ModelConfig(**TINY, qkv_bias=True, qk_norm=True))
  # Without a family, a config is the inferred family of its features (what scales export as).
  assert families.of_config(ModelConfig(**TINY, qk_norm=True)).model_type == "qwen3"
  assert ModelConfig(**TINY, family="llama") == ModelConfig(**TINY)  # the same computation


def test_features_no_family_is_inferred_from_must_be_named(monkeypatch):
  monkeypatch.setattr(families.base, "FAMILIES", Kinds("model family", "model family"))
  families.register(families.Family(model_type="solo", architectures=("SoloForCausalLM",)))
  with pytest.raises(ValueError, match="name one in ModelConfig.family: solo"):
    families.of_config(ModelConfig(**TINY))


def test_every_family_round_trips_a_tiny_model(tmp_path):
  """import(export(params)) == params, config.json naming the family itself."""
  for name in families.names():
    family = families.get(name)
    config = tiny_config(family)
    params = jax.tree.map(np.asarray, seeded_params(config)[1])  # host arrays: nothing to compile
    out = str(tmp_path / name)
    export_checkpoint(out, config, params)
    with open(f"{out}/config.json") as f:
      hf = json.load(f)
    assert (hf["architectures"], hf["model_type"]) == ([family.architectures[0]], name)
    loaded_config, _, loaded = load_hf_checkpoint(out)
    assert loaded_config == config and loaded_config.family == name
    jax.tree.map(np.testing.assert_array_equal, params, loaded)
