"""Adding a model family is one module. This one registers `tiny_family`: Llama's features under
its own names. Nothing else changes for a policy of it to be exported as itself and read back
(and tests/test_families.py holds it to the same contract as the built-in families)."""
import dataclasses
import json

import jax
import numpy as np

from focal.models import families
from focal.models.hf_export import export_checkpoint
from focal.models.hf_import import load_hf_checkpoint
from focal.models.transformer import ModelConfig
from hf_export_models import seeded_params

families.register(families.Family(
    model_type="tiny_family",
    architectures=("TinyFamilyForCausalLM",),
    hf_fields={"attention_bias": False, "mlp_bias": False},
))


def test_a_new_family_exports_as_itself_and_round_trips(tmp_path):
  config = ModelConfig(vocab_size=260, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1,
                       head_dim=8, d_ff=24, family="tiny_family")
  params = jax.tree.map(np.asarray, seeded_params(config)[1])  # a tiny random model, on the host
  export_checkpoint(str(tmp_path / "tiny"), config, params)
  hf = json.loads((tmp_path / "tiny" / "config.json").read_text())
  assert (hf["architectures"], hf["model_type"]) == (["TinyFamilyForCausalLM"], "tiny_family")
  loaded_config, _, loaded = load_hf_checkpoint(str(tmp_path / "tiny"))
  assert loaded_config.family == "tiny_family" and loaded_config == config
  jax.tree.map(np.testing.assert_array_equal, params, loaded)
  # A Llama-featured config that names no family still exports as Llama.
  export_checkpoint(str(tmp_path / "plain"), dataclasses.replace(config, family=""), params)
  assert json.loads((tmp_path / "plain" / "config.json").read_text())["model_type"] == "llama"
