"""focal.models.pretrained: one call gives weights, tokenizer, chat template and stop ids of a
checkpoint directory, or an error naming every missing file before any weight is read."""
import dataclasses
import json
import os
import shutil

import jax
import numpy as np
import pytest

from focal import sharding
from focal.models.hf_export import export_checkpoint
from focal.models.pretrained import load_pretrained, missing_files
from focal.models.scales import BOS_ID, EOS_ID
from hf_export_models import MODELS, seeded_params

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("ckpt") / "byte_qwen2")
  config = MODELS["byte_qwen2"]
  export_checkpoint(directory, config, seeded_params(config)[1])
  return directory


def test_everything_from_one_call(checkpoint):
  mesh = sharding.make_mesh((1, 1, 1))
  pre = load_pretrained(checkpoint, dtype="bfloat16", param_dtype="bfloat16", mesh=mesh)
  assert pre.config == dataclasses.replace(MODELS["byte_qwen2"], dtype="bfloat16",
                                          param_dtype="bfloat16")
  assert pre.source == os.path.abspath(checkpoint) and pre.stop_ids == (EOS_ID,)
  expected = sharding.named(mesh, sharding.param_specs(pre.params, mesh))
  jax.tree.map(lambda x, s: np.testing.assert_equal(x.sharding, s), pre.params, expected)
  ids = pre.chat.encode([{"role": "user", "content": "2+2="}], pre.tokenizer)
  assert ids == [BOS_ID, 50, 43, 50, 61]


def test_missing_files_are_all_named(tmp_path, checkpoint):
  with pytest.raises(FileNotFoundError, match=r"missing config\.json, model\.safetensors \(or "
                     r"model\.safetensors\.index\.json\), tokenizer\.json, tokenizer_config\.json"):
    load_pretrained(str(tmp_path))
  assert missing_files(str(tmp_path / "nowhere")) == [
      f"the directory itself ({tmp_path / 'nowhere'} does not exist)"]
  partial = tmp_path / "partial"
  shutil.copytree(checkpoint, partial)
  os.remove(partial / "tokenizer.json")
  os.remove(partial / "model.safetensors")
  with pytest.raises(FileNotFoundError, match=r"missing model\.safetensors \(or model\.safetensors"
                                              r"\.index\.json\), tokenizer\.json$"):
    load_pretrained(str(partial))


def test_tokenizer_and_model_must_agree(tmp_path, checkpoint):
  # Qwen3 weights with a vocabulary of 96 under a ~300-token Qwen3 tokenizer.
  mixed = tmp_path / "mixed"
  shutil.copytree(os.path.join(DATA, "hf_tiny_qwen3"), mixed)
  for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(os.path.join(DATA, "hf_chat_qwen3", name), mixed)
  with pytest.raises(ValueError, match=r"tokenizer vocab size \d+ exceeds the model's "
                                       r"vocab_size 96 \(config.json field 'vocab_size'\)"):
    load_pretrained(str(mixed))
  bad_stop = tmp_path / "bad_stop"
  shutil.copytree(checkpoint, bad_stop)
  (bad_stop / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, 999]}))
  with pytest.raises(ValueError, match=r"stop ids \[999\] .* outside the model's vocabulary "
                                       r"\[0, 260\)"):
    load_pretrained(str(bad_stop))


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "tokenizer_config.json",
                                  "generation_config.json"])
def test_a_broken_json_file_is_named_with_the_spot(tmp_path, checkpoint, name):
  # A copy cut short (a full disk, an interrupted download) raised a bare JSONDecodeError.
  broken = tmp_path / "broken"
  shutil.copytree(checkpoint, broken)
  text = (broken / name).read_text()
  (broken / name).write_text(text[:len(text) // 2])
  with pytest.raises(ValueError, match=rf"{broken / name} (is not valid JSON \(.*line \d+ column "
                                       rf"\d+\)|cannot be read as a Hugging Face tokenizer)"):
    load_pretrained(str(broken))
