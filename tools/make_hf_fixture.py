"""Write the transformers-parity fixtures the CI tests read (CI has no torch or transformers).

Run once, in a separate venv, from the repository root:
    python -m venv /work/venvs/hf
    /work/venvs/hf/bin/pip install torch==2.13.0 transformers safetensors numpy jinja2
    /work/venvs/hf/bin/python tools/make_hf_fixture.py [--project-python=python]

Writes (each records the transformers version that produced it):
  tests/data/hf_tiny_{qwen2,llama,qwen3,llama3}/   config.json, model.safetensors, reference.npz:
      tiny random checkpoints saved by transformers and its logits for a few sequences
      (tests/test_hf_import.py). Every parameter, biases and norm scales included, is random:
      HF's zero biases and unit norms would let wiring mistakes pass.
  tests/data/hf_chat_{qwen2.5,qwen3,llama3.1}/     tokenizer.json, tokenizer_config.json,
      generation_config.json, expected.json: small locally trained byte-level BPE tokenizers
      with each family's real pre-tokenizer, special tokens and chat template
      (tests/data/chat_templates/), and what `apply_chat_template(..., add_generation_prompt=True)`
      gives for a set of conversations (tests/test_chat.py).
  tests/data/hf_export_golden.{json,npz}: the seeded policies of tests/hf_export_models.py,
      exported by the project's own python (a subprocess, --project-python), loaded by
      transformers: the sha256 of each model.safetensors, transformers' logits for BOS + a
      prompt, and its chat-template ids for that prompt (tests/test_hf_export.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, \
    pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig,
                          LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
VERSION = transformers.__version__
SEQUENCES = [[1, 5, 77, 23, 190, 4, 4, 150, 9, 30, 2, 211], [3, 250, 16, 16, 99, 42, 7, 0]]


def _randomise(model, seed):
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.15 * noise)


def _write_model(model, name, seed, sequences):
  _randomise(model, seed)
  model.eval()
  out = os.path.join(DATA, name)
  model.save_pretrained(out, safe_serialization=True)
  os.remove(os.path.join(out, "generation_config.json"))  # not needed for import
  refs = {"transformers_version": np.array(VERSION)}
  vocab = model.config.vocab_size
  with torch.no_grad():
    for i, seq in enumerate(sequences):
      seq = [t % vocab for t in seq]
      refs[f"tokens_{i}"] = np.array(seq, np.int32)
      refs[f"logits_{i}"] = model(input_ids=torch.tensor([seq])).logits[0].float().numpy()
  np.savez_compressed(os.path.join(out, "reference.npz"), **refs)
  print(name, sum(p.numel() for p in model.parameters()), "params ->", out)


def make_models():
  common = dict(vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=128, attn_implementation="eager")
  _write_model(Qwen2ForCausalLM(Qwen2Config(
      num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False,
      **common)), "hf_tiny_qwen2", 1, SEQUENCES)
  # Explicit head_dim != hidden/heads, a single kv head and tied embeddings.
  _write_model(LlamaForCausalLM(LlamaConfig(
      num_key_value_heads=1, head_dim=8, rope_theta=500.0, rms_norm_eps=1e-5,
      tie_word_embeddings=True, **common)), "hf_tiny_llama", 2, SEQUENCES)
  _write_model(Qwen3ForCausalLM(Qwen3Config(
      num_key_value_heads=2, head_dim=8,
      rope_parameters={"rope_type": "default", "rope_theta": 1e6},
      rms_norm_eps=1e-6, tie_word_embeddings=True, **common)), "hf_tiny_qwen3", 3, SEQUENCES)
  # Llama 3 RoPE scaling, original context 64: at head_dim 8 and theta 1e4 the wavelengths
  # (6.3, 63, 628, 6283) are kept, smoothed, stretched and stretched; the long sequence makes
  # positions matter.
  long_seq = [(7 * i * i + 3 * i + 1) % 96 for i in range(48)]
  _write_model(LlamaForCausalLM(LlamaConfig(
      num_key_value_heads=2, head_dim=8,
      rope_parameters={"rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0,
                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 64},
      rms_norm_eps=1e-5, tie_word_embeddings=False, **common)), "hf_tiny_llama3", 4,
      SEQUENCES + [long_seq])


QWEN_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
              r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}"
                r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = ["What is the capital of France? Paris is the capital of France.",
          "You are a careful clinician. Answer briefly and cite guidelines.",
          "I have had a headache for three days. Should I worry? Drink water and rest.",
          "Tell me a joke about numbers: 1234567 and 89 walked into a bar.",
          "Hello! How can I help you today? Let me think step by step."] * 4
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a careful clinician. Answer briefly."},
     {"role": "user",
      "content": "I have had a headache for three days \u2014 should I worry? \U0001F915"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "  Tell me a joke.  \n", "name": None}],
]
FAMILIES = {
    "qwen2.5": dict(regex=QWEN_REGEX, nfc=True, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                    specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], extra=[],
                    tokenizer_class="Qwen2Tokenizer", eos_ids=["<|im_end|>", "<|endoftext|>"],
                    kwargs=[{}]),
    "qwen3": dict(regex=QWEN_REGEX, nfc=True, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                  specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                  extra=["<think>", "</think>"], tokenizer_class="Qwen2Tokenizer",
                  eos_ids=["<|im_end|>", "<|endoftext|>"], kwargs=[{}, {"enable_thinking": False}],
                  conversations=[[{"role": "user", "content": "2+2?"},
                                  {"role": "assistant",
                                   "content": "<think>\nsimple\n</think>\n\n4"},
                                  {"role": "user", "content": "and 3+3?"}]]),
    "llama3.1": dict(regex=LLAMA3_REGEX, nfc=False, bos="<|begin_of_text|>", eos="<|eot_id|>",
                     pad=None, specials=["<|begin_of_text|>", "<|end_of_text|>",
                                         "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                         "<|eom_id|>", "<|python_tag|>"], extra=[],
                     tokenizer_class="PreTrainedTokenizerFast",
                     eos_ids=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
                     kwargs=[{}, {"date_string": "01 Jan 2025"}]),
}


def _tokenizer(spec) -> Tokenizer:
  tok = Tokenizer(models.BPE())
  if spec["nfc"]:
    tok.normalizer = normalizers.NFC()
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(spec["regex"]), behavior="isolated", invert=False),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(CORPUS, trainer)
  tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in spec["specials"]])
  tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in spec["extra"]])
  post = [processors.ByteLevel(trim_offsets=False)]
  if spec["bos"]:
    bos = (spec["bos"], tok.token_to_id(spec["bos"]))
    post.append(processors.TemplateProcessing(single=f"{bos[0]} $A",
                                              pair=f"{bos[0]} $A {bos[0]} $B:1",
                                              special_tokens=[bos]))
  tok.post_processor = processors.Sequence(post)
  return tok


def make_chat(name, spec):
  out = os.path.join(DATA, f"hf_chat_{name}")
  os.makedirs(out, exist_ok=True)
  tok = _tokenizer(spec)
  tok.save(os.path.join(out, "tokenizer.json"))
  with open(os.path.join(DATA, "chat_templates", f"{name}.jinja")) as f:
    template = f.read()
  config = {"tokenizer_class": spec["tokenizer_class"], "bos_token": spec["bos"],
            "eos_token": spec["eos"], "chat_template": template, "model_max_length": 131072,
            "clean_up_tokenization_spaces": False}
  if spec["pad"]:
    config["pad_token"] = spec["pad"]
  with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump(config, f, indent=2, ensure_ascii=False)
  eos_ids = [tok.token_to_id(t) for t in spec["eos_ids"]]
  with open(os.path.join(out, "generation_config.json"), "w") as f:
    json.dump({"eos_token_id": eos_ids, "do_sample": True, "temperature": 0.6}, f, indent=2)
  hf = AutoTokenizer.from_pretrained(out)
  cases = []
  for messages in CONVERSATIONS + spec.get("conversations", []):
    for kwargs in spec["kwargs"]:
      ids = hf.apply_chat_template(messages, add_generation_prompt=True, return_dict=False,
                                   **kwargs)
      text = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
      cases.append({"messages": messages, "kwargs": kwargs, "text": text, "ids": list(ids)})
  plain = "Plain text, no template."
  expected = {"transformers_version": VERSION, "cases": cases,
              "stop_ids": GenerationConfig.from_pretrained(out).eos_token_id,
              "bos_id": hf.bos_token_id, "eos_id": hf.eos_token_id, "pad_id": hf.pad_token_id,
              "plain_text": plain, "plain_ids_with_specials": hf(plain)["input_ids"]}
  with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, ensure_ascii=False)
  print(name, len(cases), "chat cases ->", out)


def make_export_golden(project_python):
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([project_python, os.path.join(ROOT, "tests", "hf_export_models.py"), tmp],
                   check=True, env={**os.environ, "PYTHONPATH": ROOT})
    golden, logits = {"transformers_version": VERSION, "models": {}}, {}
    for name in sorted(os.listdir(tmp)):
      directory = os.path.join(tmp, name)
      with open(os.path.join(directory, "model.safetensors"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
      tok = AutoTokenizer.from_pretrained(directory)
      model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
      prompt = "9,2,7->"  # tests/hf_export_models.PROMPT
      ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                    add_generation_prompt=True, return_dict=False)
      with torch.no_grad():
        logits[name] = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
      golden["models"][name] = {"sha256": digest, "prompt": prompt, "ids": list(ids),
                                "architecture": model.config.architectures[0]}
      print(name, model.config.architectures[0], digest[:12])
  with open(os.path.join(DATA, "hf_export_golden.json"), "w") as f:
    json.dump(golden, f, indent=1)
  np.savez_compressed(os.path.join(DATA, "hf_export_golden.npz"), **logits)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--project-python", default="python",
                      help="the interpreter with the project's dependencies (jax, flax, ...)")
  args = parser.parse_args()
  torch.manual_seed(0)
  make_models()
  for name, spec in FAMILIES.items():
    make_chat(name, spec)
  make_export_golden(args.project_python)


if __name__ == "__main__":
  sys.exit(main())
