"""Write tiny random HF checkpoints plus reference logits for the import parity tests.

Needs torch + transformers (kept out of the project's dependencies), e.g.
    python -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install torch transformers safetensors numpy
    /tmp/hfvenv/bin/python tools/make_hf_fixture.py
Writes tests/data/hf_tiny_{qwen2,llama}/{config.json, model.safetensors, reference.npz}.

Every parameter (biases and norm weights included) is randomised: HF initialises biases to 0 and
norm weights to 1, which would let transposition or bias-wiring mistakes pass the parity test.
"""
import os

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data")
SEQUENCES = [[1, 5, 77, 23, 190, 4, 4, 150, 9, 30, 2, 211],
             [3, 250, 16, 16, 99, 42, 7, 0]]


def _randomise(model, seed):
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.15 * noise)


def _write(model, name, seed):
  _randomise(model, seed)
  model.eval()
  out = os.path.join(OUT, name)
  model.save_pretrained(out, safe_serialization=True)
  refs = {}
  with torch.no_grad():
    for i, seq in enumerate(SEQUENCES):
      ids = torch.tensor([seq])
      refs[f"tokens_{i}"] = np.array(seq, np.int32)
      refs[f"logits_{i}"] = model(input_ids=ids).logits[0].float().numpy()
  np.savez_compressed(os.path.join(out, "reference.npz"), **refs)
  generation_config = os.path.join(out, "generation_config.json")
  if os.path.exists(generation_config):  # not needed for import; keeps the fixture minimal
    os.remove(generation_config)
  print(name, sum(p.numel() for p in model.parameters()), "params ->", out)


def main():
  torch.manual_seed(0)
  qwen2 = Qwen2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6,
                      rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=128,
                      attn_implementation="eager")
  _write(Qwen2ForCausalLM(qwen2), "hf_tiny_qwen2", seed=1)
  # Llama with an explicit head_dim != hidden/heads, MHA-style grouping and tied embeddings.
  llama = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, head_dim=16, rope_theta=500.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=128,
                      attn_implementation="eager")
  _write(LlamaForCausalLM(llama), "hf_tiny_llama", seed=2)


if __name__ == "__main__":
  main()
