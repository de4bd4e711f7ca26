"""The project's byte vocabulary as Hugging Face tokenizer files, for exported byte-level policies.

Ids are the project's (focal.models.scales): 0-255 the UTF-8 bytes, then PAD 256, BOS 257,
EOS 258, UNK 259. tokenizer.json is a byte-level BPE with no merges over the GPT-2 byte alphabet
(each byte maps to one printable character, whose id is the byte), so `tokenizers` and
transformers encode text to exactly its UTF-8 bytes. The specials have names no prompt is
likely to contain, since a tokenizer matches added tokens inside raw text.

The chat template renders a single user message as BOS + its text, with nothing added for the
generation prompt: the trainer encodes a synthetic prompt as BOS + its bytes
(`focal.trainer.encode_prompts`), so an exported policy sees the tokens it was trained on. Any
other conversation is refused (`raise_exception`) rather than rendered into tokens the policy
never saw.
"""
from __future__ import annotations

import json
import os

from focal.models.scales import BOS_ID, BYTE_VOCAB_SIZE, EOS_ID, N_BYTES, PAD_ID, UNK_ID

SPECIAL_TOKENS = {PAD_ID: "<|byte_pad|>", BOS_ID: "<|byte_bos|>", EOS_ID: "<|byte_eos|>",
                  UNK_ID: "<|byte_unk|>"}

CHAT_TEMPLATE = (
    "{%- if messages | length != 1 or messages[0]['role'] != 'user' -%}\n"
    "{{- raise_exception('a byte-level policy is prompted with exactly one user message, got '"
    " ~ messages | length ~ ' message(s) starting with role ' ~ messages[0]['role']) -}}\n"
    "{%- endif -%}\n"
    "{{- bos_token ~ messages[0]['content'] -}}\n")


def byte_to_char() -> dict[int, str]:
  """GPT-2's byte -> printable character map (what the ByteLevel pre-tokenizer emits)."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  mapping, extra = {}, 0
  for b in range(N_BYTES):
    if b in printable:
      mapping[b] = chr(b)
    else:
      mapping[b] = chr(N_BYTES + extra)
      extra += 1
  return mapping


def build_tokenizer():
  """A `tokenizers.Tokenizer` whose ids are the project's byte ids and specials."""
  from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

  vocab = {char: b for b, char in byte_to_char().items()}
  tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([AddedToken(SPECIAL_TOKENS[i], special=True, normalized=False)
                          for i in sorted(SPECIAL_TOKENS)])
  for i, name in SPECIAL_TOKENS.items():
    if tok.token_to_id(name) != i:  # add_special_tokens numbers them in order after the bytes
      raise AssertionError(f"special token {name} got id {tok.token_to_id(name)}, not {i}")
  return tok


def tokenizer_config(max_length: int) -> dict:
  return {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": SPECIAL_TOKENS[BOS_ID], "eos_token": SPECIAL_TOKENS[EOS_ID],
      "pad_token": SPECIAL_TOKENS[PAD_ID], "unk_token": SPECIAL_TOKENS[UNK_ID],
      "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
      "model_max_length": max_length, "chat_template": CHAT_TEMPLATE,
  }


def generation_config() -> dict:
  return {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}


def write_files(directory: str, max_length: int) -> list[str]:
  """tokenizer.json, tokenizer_config.json and generation_config.json into `directory`."""
  if BYTE_VOCAB_SIZE != N_BYTES + len(SPECIAL_TOKENS):
    raise AssertionError("the byte vocabulary layout changed; update SPECIAL_TOKENS")
  build_tokenizer().save(os.path.join(directory, "tokenizer.json"))
  for name, content in (("tokenizer_config.json", tokenizer_config(max_length)),
                        ("generation_config.json", generation_config())):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      json.dump(content, f, indent=2, ensure_ascii=False)
  return ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]
