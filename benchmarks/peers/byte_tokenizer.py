"""Focal's 260-id byte vocabulary as a Hugging Face fast tokenizer, built locally (no download).

Ids 0..255 are the bytes, then <pad> 256, <s> 257, </s> 258, <unk> 259 (focal.models.scales).
It is a byte-level BPE without merges, so a text of n ASCII bytes is n tokens. Needs
`tokenizers` and `transformers`, which both peers' environments have.
"""
from __future__ import annotations

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def byte_to_unicode() -> dict[int, str]:
  """GPT-2's reversible map from bytes to printable characters (what ByteLevel pre-tokenizes to)."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  chars, extra = {}, 0
  for b in range(256):
    if b in printable:
      chars[b] = chr(b)
    else:
      chars[b] = chr(256 + extra)
      extra += 1
  return chars


def build():
  """A PreTrainedTokenizerFast over the byte vocabulary with pad/eos/unk set.

  No BOS token is declared (id 257 stays in the vocabulary): Tunix's sampler prepends a
  declared BOS, which would make the 16-byte prompts 17 tokens, unlike the other peers'.
  """
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  vocab = {char: b for b, char in byte_to_unicode().items()}
  vocab.update({token: 256 + i for i, token in enumerate(SPECIALS)})
  core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
  core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  core.decoder = decoders.ByteLevel()
  core.add_special_tokens(list(SPECIALS))
  return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>",
                                 unk_token="<unk>")
