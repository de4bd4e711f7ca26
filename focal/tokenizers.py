"""Tokenizers behind one small interface: bytes by default, a Hugging Face tokenizer.json for a
checkpoint.

The byte layout below is a project-wide contract (models, samplers and data all
assume it): ids 0-255 are raw UTF-8 bytes, then four special ids.
"""
from __future__ import annotations

import json
import os
import re
from typing import Sequence

import numpy as np

BYTE_VOCAB = 256
PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
UNK_ID = 259
BYTE_VOCAB_SIZE = 260


class ByteTokenizer:
  """UTF-8 bytes as tokens: no file, no training, lossless on any string."""

  vocab_size = BYTE_VOCAB_SIZE
  pad_id = PAD_ID
  bos_id = BOS_ID
  eos_id = EOS_ID
  unk_id = UNK_ID

  def encode(self, text: str) -> list[int]:
    # surrogatepass keeps lone surrogates (legal in Python str) encodable and round-trippable.
    return list(text.encode("utf-8", errors="surrogatepass"))

  def decode(self, ids: Sequence[int]) -> str:
    out = bytearray()
    pieces: list[str] = []
    for i in ids:
      i = int(i)
      if 0 <= i < BYTE_VOCAB:
        out.append(i)
      elif i == UNK_ID:
        pieces.append(_flush(out))
        pieces.append("\ufffd")
      elif i in (PAD_ID, BOS_ID, EOS_ID):
        continue
      else:
        raise ValueError(f"token id {i} is outside the byte vocabulary [0, {BYTE_VOCAB_SIZE})")
    pieces.append(_flush(out))
    return "".join(pieces)

  def decode_response(self, ids: Sequence[int], mask: Sequence[bool] | None = None) -> str:
    """The text of one response [L] (mask [L], True on a prefix), LOSSLESS: every id survives.

    Bytes that are not valid UTF-8 decode with surrogateescape; special ids become the markers
    of RESPONSE_MARKERS, and a literal "<|" in the text is written "<|<|", so no byte run can
    read as a marker. `encode_response` is the exact inverse. Used where a host-side grader must
    see exactly what the policy emitted (the rule judge server re-grades these ids).
    """
    ids = [int(i) for i in ids]
    if mask is not None:
      ids = ids[:_prefix_length([bool(m) for m in mask], len(ids))]
    pieces, run = [], bytearray()
    for i in ids:
      if 0 <= i < BYTE_VOCAB:
        run.append(i)
      elif i in RESPONSE_MARKERS:
        pieces += [_escape_run(run), RESPONSE_MARKERS[i]]
      else:
        raise ValueError(f"token id {i} is outside the byte vocabulary [0, {BYTE_VOCAB_SIZE})")
    pieces.append(_escape_run(run))
    return "".join(pieces)

  def encode_response(self, text: str, length: int | None = None):
    """Inverse of `decode_response`: (ids [n] int32, mask [n] bool), padded to `length` with PAD.

    Raises ValueError on text no `decode_response` can produce (a bare "<|" or a character
    outside what surrogateescape yields) and when the response is longer than `length`.
    """
    ids, pos = [], 0
    for m in _MARKER_OR_ESCAPE.finditer(text):
      ids += _unescaped_bytes(text[pos:m.start()], pos)
      ids += list(b"<|") if m.group(0) == "<|<|" else [_MARKER_IDS[m.group(0)]]
      pos = m.end()
    ids += _unescaped_bytes(text[pos:], pos)
    n = len(ids) if length is None else int(length)
    if len(ids) > n:
      raise ValueError(f"the response has {len(ids)} tokens, more than length={n}")
    tokens = np.full((n,), PAD_ID, np.int32)
    tokens[:len(ids)] = ids
    return tokens, np.arange(n) < len(ids)


# Special ids inside a response text (see ByteTokenizer.decode_response).
RESPONSE_MARKERS = {PAD_ID: "<|pad|>", BOS_ID: "<|bos|>", EOS_ID: "<|eos|>", UNK_ID: "<|unk|>"}
_MARKER_IDS = {v: k for k, v in RESPONSE_MARKERS.items()}
_MARKER_OR_ESCAPE = re.compile("|".join(re.escape(m) for m in ["<|<|", *_MARKER_IDS]))


def _prefix_length(mask: list[bool], n: int) -> int:
  if len(mask) != n:
    raise ValueError(f"the mask has {len(mask)} entries for {n} ids")
  k = sum(mask)
  if any(mask[k:]) or not all(mask[:k]):
    raise ValueError("the response mask must be True on a prefix (the sampler's layout); got "
                     f"{''.join('1' if m else '0' for m in mask)}")
  return k


def _escape_run(run: bytearray) -> str:
  text = bytes(run).decode("utf-8", errors="surrogateescape").replace("<|", "<|<|")
  run.clear()
  return text


def _unescaped_bytes(segment: str, offset: int) -> list[int]:
  if "<|" in segment:
    at = offset + segment.index("<|")
    raise ValueError(f"unescaped '<|' at character {at}: not a decode_response text")
  try:
    return list(segment.encode("utf-8", errors="surrogateescape"))
  except UnicodeEncodeError as e:
    raise ValueError(f"character {offset + e.start} ({segment[e.start]!r}) cannot come from "
                     "decode_response") from None


def _flush(buf: bytearray) -> str:
  data = bytes(buf)
  buf.clear()
  try:
    return data.decode("utf-8", errors="surrogatepass")
  except UnicodeDecodeError:
    # A sampled sequence can cut or garble a multi-byte character: replace rather than fail.
    return data.decode("utf-8", errors="replace")


# Names the common HF tokenizer families give their special tokens, most specific first.
_HF_CANDIDATES = {
    "bos": ("<|begin_of_text|>", "<s>", "<bos>", "[CLS]", "<|endoftext|>"),
    "eos": ("<|end_of_text|>", "<|im_end|>", "</s>", "<eos>", "[SEP]", "<|endoftext|>"),
    "pad": ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>"),
}


class HFTokenizer:
  """A Hugging Face `tokenizer.json` (needs the `tokenizers` package).

  Special tokens are found by their usual names unless given; a missing pad
  token falls back to EOS (padding is masked). `HFTokenizer.from_directory(ckpt)` takes them from
  the checkpoint's tokenizer_config.json instead; there `bos_id` is None when the config sets
  bos_token to null (Qwen: no BOS), and `add_bos` says whether plain text gets a BOS
  (tokenizer_config's add_bos_token, else whether tokenizer.json's post-processor adds one).
  `encode` never adds special tokens: chat templates write their own.
  """

  def __init__(self, path: str, bos_token: str | None = None, eos_token: str | None = None,
               pad_token: str | None = None, *, add_bos: bool = False, has_bos: bool = True):
    try:
      from tokenizers import Tokenizer as _HF
    except ImportError as e:
      raise ImportError("HFTokenizer needs the 'tokenizers' package: pip install tokenizers") from e
    if not os.path.exists(path):
      raise FileNotFoundError(f"tokenizer.json not found: {path}")
    try:
      self._tok = _HF.from_file(path)
    except Exception as e:  # the Rust parser's errors name neither the file nor a type
      raise ValueError(f"{path} cannot be read as a Hugging Face tokenizer ({e}); the file is "
                       "damaged or not a tokenizer.json: copy it again from the checkpoint") \
          from None
    self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
    self.bos_id = self._find("bos", bos_token, path) if has_bos else None
    self.eos_id = self._find("eos", eos_token, path)
    self.add_bos = add_bos
    try:
      self.pad_id = self._find("pad", pad_token, path)
    except ValueError:
      if pad_token is not None:
        raise
      self.pad_id = self.eos_id

  @classmethod
  def from_directory(cls, directory: str) -> "HFTokenizer":
    """tokenizer.json with the bos/eos/pad tokens and add_bos of tokenizer_config.json."""
    config = read_tokenizer_config(directory)
    names = {k: special_token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token")}
    has_bos = not ("bos_token" in config and names["bos_token"] is None)
    tok = cls(os.path.join(directory, "tokenizer.json"), bos_token=names["bos_token"],
              eos_token=names["eos_token"], pad_token=names["pad_token"], has_bos=has_bos)
    post = tok._tok.encode("", add_special_tokens=True).ids
    tok.add_bos = bool(config.get("add_bos_token", bool(post) and post[0] == tok.bos_id))
    return tok

  def _find(self, kind: str, explicit: str | None, path: str) -> int:
    names = (explicit,) if explicit is not None else _HF_CANDIDATES[kind]
    for name in names:
      tid = self._tok.token_to_id(name)
      if tid is not None:
        return int(tid)
    raise ValueError(f"{path}: no {kind} token among {list(names)}; pass {kind}_token=...")

  def encode(self, text: str) -> list[int]:
    return list(self._tok.encode(text, add_special_tokens=False).ids)

  def decode(self, ids: Sequence[int]) -> str:
    special = {self.pad_id, self.bos_id, self.eos_id}
    return self._tok.decode([int(i) for i in ids if int(i) not in special],
                            skip_special_tokens=False)


def special_token_text(value) -> str | None:
  """tokenizer_config.json writes a special token as "<s>" or as {"content": "<s>", ...}."""
  return value.get("content") if isinstance(value, dict) else value


def read_tokenizer_config(directory: str) -> dict:
  """A checkpoint directory's tokenizer_config.json; FileNotFoundError naming it if absent."""
  path = os.path.join(directory, "tokenizer_config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{directory}: no tokenizer_config.json")
  return read_json(path)


def read_json(path: str):
  """A checkpoint's JSON file; ValueError naming the file and the spot when it does not parse
  (a bare JSONDecodeError names neither the file nor what to do)."""
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON ({e.msg}: line {e.lineno} column {e.colno}); "
                       "the file is damaged: copy it again from the checkpoint") from None
