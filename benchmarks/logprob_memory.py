"""Memory of the log-prob pass at a large vocabulary, from XLA's buffer assignment (figures only).

    python -m benchmarks.logprob_memory                    # Qwen's 151,936 vocabulary
    python -m benchmarks.logprob_memory --rows 4096 --chunk 0 1024

Compiles (on this CPU, abstract inputs: nothing is allocated) value_and_grad of the masked sum
of `token_logprobs(..., with_entropy=True)` for a one-layer model of width 1,024 with the given
vocabulary, and prints XLA's temporary bytes (`memory_analysis().temp_size_in_bytes`: every
buffer the program needs beyond its inputs and outputs) next to the size of one float32
[rows, V] logits array, which an unchunked pass holds several copies of (logits, softmax,
their gradient). With the log-probs computed in chunks of positions (ModelConfig.logits_chunk;
0 = automatic) the temporaries stay near one chunk's logits whatever the rows.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from focal.models.transformer import ModelConfig, abstract_model, token_logprobs  # noqa: E402

GIB = 2 ** 30


def temp_bytes(config: ModelConfig, batch: int, length: int) -> int:
  graphdef, params = abstract_model(config)

  def loss(params, tokens, mask):
    logp, entropy = token_logprobs(graphdef, params, tokens, mask, with_entropy=True)
    return jnp.sum(logp * mask[:, 1:]), jnp.mean(entropy)

  args = (params, jax.ShapeDtypeStruct((batch, length), jnp.int32),
          jax.ShapeDtypeStruct((batch, length), bool))
  step = jax.jit(jax.value_and_grad(loss, has_aux=True))
  return step.lower(*args).compile().memory_analysis().temp_size_in_bytes


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--vocab", type=int, default=151936)
  parser.add_argument("--rows", nargs="+", type=int, default=[4096, 16384],
                      help="positions scored (rows of 257 tokens: 256 log-probs each)")
  parser.add_argument("--chunk", nargs="+", type=int, default=[0],
                      help="ModelConfig.logits_chunk values (0 = automatic)")
  args = parser.parse_args(argv)
  base = ModelConfig(vocab_size=args.vocab, d_model=1024, n_layers=1, n_heads=8, n_kv_heads=8,
                     head_dim=128, d_ff=2048, max_seq_len=4096)
  chunked = "logits_chunk" in {f.name for f in dataclasses.fields(ModelConfig)}
  print(f"jax {jax.__version__} backend={jax.default_backend()}; vocabulary {args.vocab}, "
        f"{'chunked log-probs' if chunked else 'no logits_chunk setting (unchunked)'}")
  for rows in args.rows:
    batch = max(1, rows // 256)
    logits = batch * 256 * args.vocab * 4 / GIB
    for chunk in (args.chunk if chunked else [None]):
      config = base if chunk is None else dataclasses.replace(base, logits_chunk=chunk)
      temp = temp_bytes(config, batch, 257) / GIB
      label = "n/a" if chunk is None else f"{config.logits_rows}"
      print(f"rows {batch * 256:6d} chunk {label:>5}: XLA temporaries {temp:7.2f} GiB "
            f"(one float32 [rows, V] logits array: {logits:6.2f} GiB)", flush=True)


if __name__ == "__main__":
  main()
