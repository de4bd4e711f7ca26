"""focal.models.hf_export: export -> transformers gives the project's logits (golden recorded once
by tools/make_hf_fixture.py for the seeded policies of tests/hf_export_models.py), and
export -> load_hf_checkpoint / load_pretrained round-trips parameters, tokens and chat ids."""
import dataclasses
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from focal.models import forward
from focal.models.hf_export import export_checkpoint
from focal.models.hf_import import load_hf_checkpoint
from focal.models.pretrained import load_pretrained
from focal.models.scales import BOS_ID, EOS_ID, PAD_ID
from hf_export_models import MODELS, PROMPT, seeded_params

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def golden():
  with open(os.path.join(DATA, "hf_export_golden.json")) as f:
    meta = json.load(f)
  logits = np.load(os.path.join(DATA, "hf_export_golden.npz"))
  return meta["models"], {name: logits[name] for name in logits.files}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_matches_transformers_golden(name, golden, tmp_path):
  meta, logits = golden
  config = MODELS[name]
  graphdef, params = seeded_params(config)
  export_checkpoint(str(tmp_path / name), config, params)
  with open(tmp_path / name / "model.safetensors", "rb") as f:
    assert hashlib.sha256(f.read()).hexdigest() == meta[name]["sha256"]  # the bytes HF loaded
  with open(tmp_path / name / "config.json") as f:
    assert json.load(f)["architectures"] == [meta[name]["architecture"]]
  # transformers' chat template ids for the prompt are BOS + its bytes, as the trainer encodes.
  ids = meta[name]["ids"]
  assert meta[name]["prompt"] == PROMPT and ids == [BOS_ID] + list(PROMPT.encode())
  tokens = jnp.asarray(ids)[None]
  ours, _ = forward(graphdef, params, tokens, jnp.arange(len(ids))[None],
                    jnp.ones_like(tokens, bool))
  assert np.abs(np.asarray(ours[0]) - logits[name]).max() < 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_round_trips_exactly(name, tmp_path):
  config = MODELS[name]
  _, params = seeded_params(config, seed=1)
  files = export_checkpoint(str(tmp_path / "out"), config, params)
  assert files == sorted(["config.json", "generation_config.json", "model.safetensors",
                          "tokenizer.json", "tokenizer_config.json"])
  loaded_config, _, loaded = load_hf_checkpoint(str(tmp_path / "out"),
                                                param_dtype=config.param_dtype)
  assert loaded_config == config
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params, loaded)
  assert {x.dtype for x in jax.tree.leaves(loaded)} == {jnp.dtype(config.storage_dtype)}
  assert not os.path.exists(str(tmp_path / "out") + ".partial")


def test_byte_tokenizer_and_chat_template(tmp_path):
  config = MODELS["byte_llama"]
  _, params = seeded_params(config)
  export_checkpoint(str(tmp_path), config, params, overwrite=True)
  pre = load_pretrained(str(tmp_path))
  tok = pre.tokenizer
  assert (tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id, tok.add_bos) == (
      260, PAD_ID, BOS_ID, EOS_ID, False)
  assert pre.stop_ids == (EOS_ID,)
  for text in ("Sort: 9, 2, 7", "héllo wörld 🙂\n\t  <s> </s>", ""):
    assert tok.encode(text) == list(text.encode())
    ids = pre.chat.encode([{"role": "user", "content": text}], tok)
    assert ids == [BOS_ID] + list(text.encode())
    assert tok.decode([BOS_ID] + tok.encode(text) + [EOS_ID, PAD_ID]) == text
  with pytest.raises(ValueError, match="exactly one user message, got 2"):
    pre.chat.render([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])


def test_export_from_a_source_checkpoint(tmp_path):
  """A policy trained from an HF checkpoint keeps that checkpoint's tokenizer and config."""
  config = MODELS["byte_qwen3"]
  _, params = seeded_params(config)
  source = str(tmp_path / "source")
  export_checkpoint(source, config, params)
  with open(os.path.join(source, "config.json")) as f:
    source_config = json.load(f)
  source_config["custom_field"] = "kept"
  with open(os.path.join(source, "config.json"), "w") as f:
    json.dump(source_config, f)
  pre = load_pretrained(source, param_dtype="bfloat16")
  trained = jax.tree.map(lambda x: x + 1, pre.params)
  out = str(tmp_path / "trained")
  export_checkpoint(out, pre.config, trained, source=source)
  for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    with open(os.path.join(source, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
      assert a.read() == b.read(), name
  with open(os.path.join(out, "config.json")) as f:
    exported = json.load(f)
  assert exported["custom_field"] == "kept" and exported["torch_dtype"] == "bfloat16"
  _, _, loaded = load_hf_checkpoint(out, param_dtype="bfloat16")
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               trained, loaded)
  wrong = dataclasses.replace(pre.config, n_layers=1)
  with pytest.raises(ValueError, match="differs from"):
    export_checkpoint(str(tmp_path / "wrong"), wrong, trained, source=source)


def test_export_guards(tmp_path):
  config = MODELS["byte_llama"]
  _, params = seeded_params(config)
  big_vocab = dataclasses.replace(config, vocab_size=300)
  with pytest.raises(ValueError, match="not on the byte vocabulary"):
    export_checkpoint(str(tmp_path / "a"), big_vocab, seeded_params(big_vocab)[1])
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "keep.txt").write_text("user data")
  with pytest.raises(FileExistsError, match="not empty"):
    export_checkpoint(str(tmp_path / "b"), config, params)
  assert (tmp_path / "b" / "keep.txt").exists()
  files = export_checkpoint(str(tmp_path / "b"), config, params, overwrite=True,
                            max_shard_bytes=20_000)
  assert "model.safetensors.index.json" in files and not (tmp_path / "b" / "keep.txt").exists()
  _, _, loaded = load_hf_checkpoint(str(tmp_path / "b"))
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params, loaded)


@pytest.mark.slow
def test_export_cli_on_a_trained_run(tmp_path):
  """experiments.export writes a run's checkpoint; the export sees the prompts' training tokens."""
  import subprocess
  import sys

  from configs import base
  from focal import evaluation, loop
  from focal.data import synthetic_source

  workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
  config = base.get_config("tiny")
  config.warm_start.cache_dir = ""
  config.total_steps = 1
  loop.run(config, workdir, progress=False)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cli = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={workdir}",
                        f"--out={out}"], cwd=root, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": root})
  assert cli.returncode == 0, cli.stderr[-3000:]
  assert f"step 1 of {workdir} -> {out}" in cli.stdout
  setup = evaluation.build_for_eval(config)
  params, _ = evaluation.restore_params(setup, workdir)
  pre = load_pretrained(out)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params, pre.params)
  d = config.data
  _, _, eval_set = synthetic_source.prompt_sets(config.task, d.train_prompts_per_task,
                                                d.eval_prompts_per_task, config.seed)
  tokens, mask = synthetic_source.encode_prompts(eval_set)
  for row in range(3):
    prompt = bytes(eval_set.tokens[row]).decode()
    ids = pre.chat.encode([{"role": "user", "content": prompt}], pre.tokenizer)
    assert ids == [int(t) for t, m in zip(tokens[row], mask[row]) if m]
  rerun = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={workdir}",
                          f"--out={out}"], cwd=root, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": root})
  # One line, not a traceback (libtpu, where installed, may log its own lines before it).
  errors = [line for line in rerun.stderr.splitlines() if line.startswith("error: ")]
  assert rerun.returncode == 1 and len(errors) == 1 and "Traceback" not in rerun.stderr
  assert "--overwrite" in errors[0]
