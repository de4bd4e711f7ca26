"""Run by a peer environment's Python (torch, transformers, peft; never a project dependency):
logits of a focal peft-layout export loaded by peft on its base, and of the merged export.

  python tests/peft_parity.py BASE_DIR PEFT_DIR MERGED_DIR TOKENS.npy OUT.npz
"""
import sys

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def logits(model, tokens):
  with torch.no_grad():
    return model(input_ids=torch.as_tensor(tokens)).logits.float().numpy()


def main(base_dir, peft_dir, merged_dir, tokens_path, out_path):
  tokens = np.load(tokens_path)
  load = lambda d: AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
  adapted = PeftModel.from_pretrained(load(base_dir), peft_dir).eval()
  np.savez(out_path, peft=logits(adapted, tokens), merged=logits(load(merged_dir), tokens),
           base=logits(load(base_dir), tokens))


if __name__ == "__main__":
  main(*sys.argv[1:])
