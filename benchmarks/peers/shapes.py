"""The shapes and settings every peer runs in `benchmarks/vs_peers.py` (standard library only).

Each peer's worker runs in its own virtual environment and imports this file by path, so it must
not import anything outside the standard library.

Settings (the issue's): 8 prompts x G = 8 rollouts, prompt 16 + completion 32 tokens with every
completion forced to full length, float32, beta = 0 (no reference pass), one update per rollout
batch (mu = 1, one mini-batch), AdamW after a global-norm clip, sampling at temperature 1 with no
top-k/top-p, randomly initialised tied-embedding Llama/Qwen2 models over a 260-token byte
vocabulary (256 bytes + 4 specials), one programmatic criterion (the response holds the byte "a")
with a weighted-sum reward.
"""
from __future__ import annotations

import argparse
import json
import sys

VOCAB_SIZE = 260          # 256 bytes + PAD, BOS, EOS, UNK (focal.models.scales)
PAD_ID, BOS_ID, EOS_ID = 256, 257, 258
NUM_PROMPTS = 8           # B prompts per iteration
GROUP_SIZE = 8            # G rollouts per prompt
PROMPT_LEN = 16           # tokens per prompt (bytes; no padding)
COMPLETION_LEN = 32       # tokens per completion, forced to full length
LEARNING_RATE = 1e-5
GRAD_CLIP = 1.0
TARGET_BYTE = "a"         # the single criterion: the completion contains this byte

SHAPES = {
    "0.11M": dict(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=176),
    "3.0M": dict(n_layers=4, d_model=256, n_heads=8, n_kv_heads=4, d_ff=704),
    "23.7M": dict(n_layers=8, d_model=512, n_heads=8, n_kv_heads=4, d_ff=1408),
}


def head_dim(shape: dict) -> int:
  return shape["d_model"] // shape["n_heads"]


def param_count(shape: dict) -> int:
  """Parameters of the tied-embedding model (embedding counted once, RMSNorm scales included)."""
  d, hd = shape["d_model"], head_dim(shape)
  attn = d * hd * (2 * shape["n_heads"] + 2 * shape["n_kv_heads"])
  layer = attn + 3 * d * shape["d_ff"] + 2 * d
  return VOCAB_SIZE * d + shape["n_layers"] * layer + d


def prompt_texts(num: int = NUM_PROMPTS) -> list[str]:
  """`num` distinct ASCII prompts of exactly PROMPT_LEN bytes (= tokens under a byte vocabulary)."""
  return [f"prompt {i:02d}: solve"[:PROMPT_LEN].ljust(PROMPT_LEN, ".") for i in range(num)]


def reward(completion: str) -> float:
  """The one criterion, as the text-based peers grade it."""
  return float(TARGET_BYTE in completion)


def emit(record: dict) -> None:
  """One JSON line on stdout: the protocol between a worker and `vs_peers.py`."""
  sys.stdout.write("@@ " + json.dumps(record) + "\n")
  sys.stdout.flush()


def commands():
  """The driver's commands, one per line on stdin: 'run K' (time K iterations) or 'quit'."""
  for line in sys.stdin:
    words = line.split()
    if not words or words[0] == "quit":
      return
    if words[0] != "run" or len(words) != 2:
      raise ValueError(f"unknown command {line!r}; expected 'run K' or 'quit'")
    yield int(words[1])


def worker_args(doc: str, argv=None, dtypes: bool = False) -> argparse.Namespace:
  """A worker's command line: --shape, --warmup (and --dtype for Focal's)."""
  parser = argparse.ArgumentParser(description=doc.split("\n")[0])
  parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
  parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
  if dtypes:
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  return parser.parse_args(argv)
