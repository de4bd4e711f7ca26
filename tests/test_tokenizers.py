import json
import os
import re

import pytest
from hypothesis import given, settings, strategies as st

from focal import tokenizers as T


def test_byte_layout_contract():
  tok = T.ByteTokenizer()
  assert (T.PAD_ID, T.BOS_ID, T.EOS_ID, T.UNK_ID, T.BYTE_VOCAB_SIZE) == (256, 257, 258, 259, 260)
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (256, 257, 258, 260)
  assert tok.encode("Ab") == [65, 98]
  assert tok.encode("é") == [0xC3, 0xA9]
  assert tok.encode("") == []


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_byte_round_trip_any_unicode(text):
  tok = T.ByteTokenizer()
  ids = tok.encode(text)
  assert all(0 <= i < 256 for i in ids)
  assert tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(), st.lists(st.sampled_from([T.PAD_ID, T.BOS_ID, T.EOS_ID]), max_size=4))
def test_byte_decode_drops_specials(text, specials):
  tok = T.ByteTokenizer()
  ids = specials + tok.encode(text) + [T.EOS_ID] + [T.PAD_ID] * 3
  assert tok.decode(ids) == text


def test_byte_decode_cut_character_and_unk():
  tok = T.ByteTokenizer()
  cut = tok.encode("é")[:1]
  assert tok.decode(tok.encode("a") + cut) == "a\ufffd"
  assert tok.decode([104, T.UNK_ID, 105]) == "h\ufffdi"


def test_byte_decode_rejects_out_of_vocab():
  with pytest.raises(ValueError, match="outside the byte vocabulary"):
    T.ByteTokenizer().decode([1, 260])


def test_a_missing_tokenizer_json_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.json not found"):
    T.HFTokenizer(str(tmp_path / "tokenizer.json"))


CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world", "rubric reward",
          "grpo in jax", "criteria met or not"] * 20


def _train_hf(path):
  import tokenizers
  from tokenizers import models, pre_tokenizers, trainers, decoders
  hf = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  hf.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  hf.train_from_iterator(CORPUS, trainer)
  hf.save(path)


def test_hf_round_trip(tmp_path):
  path = str(tmp_path / "tokenizer.json")
  _train_hf(path)
  tok = T.HFTokenizer(path)
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
  ids = tok.encode("hello world")
  assert tok.decode([tok.bos_id] + ids + [tok.eos_id]) == "hello world"


# -- the lossless response codec (decode_response / encode_response) --------------------------

ANY_ID = st.integers(0, T.BYTE_VOCAB_SIZE - 1)


@settings(max_examples=400, deadline=None)
@given(st.lists(ANY_ID, max_size=48), st.booleans(), st.integers(0, 8))
def test_response_codec_round_trips_any_ids(ids, eos_terminated, pad):
  tok = T.ByteTokenizer()
  body = ids + [T.EOS_ID] if eos_terminated else ids
  tokens = body + [T.PAD_ID] * pad
  mask = [True] * len(body) + [False] * pad
  text = tok.decode_response(tokens, mask)
  back, back_mask = tok.encode_response(text, length=len(tokens))
  assert back.tolist() == tokens and back_mask.tolist() == mask
  assert tok.decode_response(back, back_mask) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_response_codec_invalid_utf8_bytes_round_trip(data):
  tok = T.ByteTokenizer()
  text = tok.decode_response(list(data))
  assert tok.encode_response(text)[0].tolist() == list(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(["<", "|", "e", "o", "s", ">", "p", "a", "d"]),
               max_size=30))
def test_response_codec_literal_marker_text_is_not_a_special_id(text):
  # Text made of the markers' own characters must come back as bytes, never as special ids.
  tok = T.ByteTokenizer()
  ids = tok.encode(text)
  decoded = tok.decode_response(ids)
  assert tok.encode_response(decoded)[0].tolist() == ids
  assert all(i < T.BYTE_VOCAB for i in tok.encode_response(decoded)[0])


def test_response_codec_readable_form():
  tok = T.ByteTokenizer()
  assert tok.decode_response(tok.encode("85=47+38") + [T.EOS_ID]) == "85=47+38<|eos|>"
  assert tok.decode_response([104, T.UNK_ID, 105, T.BOS_ID, T.PAD_ID]) == "h<|unk|>i<|bos|><|pad|>"
  assert tok.decode_response(tok.encode("a<|eos|>")) == "a<|<|eos|>"
  assert tok.decode_response([0xC3]) == "\udcc3"  # a cut character survives as its byte
  assert tok.decode_response(tok.encode("é")) == "é"
  ids = [104, 105, T.EOS_ID, T.PAD_ID]
  assert tok.decode_response(ids, [True, True, True, False]) == "hi<|eos|>"


@pytest.mark.parametrize("text, message", [
    ("a<|b", "unescaped '<|' at character 1"),
    ("<|eot|>", "unescaped"),
    ("\ud800", "cannot come from decode_response"),
])
def test_encode_response_rejects_foreign_text(text, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    T.ByteTokenizer().encode_response(text)


def test_response_codec_errors():
  tok = T.ByteTokenizer()
  with pytest.raises(ValueError, match="True on a prefix"):
    tok.decode_response([1, 2, 3], [True, False, True])
  with pytest.raises(ValueError, match="3 entries for 2 ids"):
    tok.decode_response([1, 2], [True, True, True])
  with pytest.raises(ValueError, match="outside the byte vocabulary"):
    tok.decode_response([1, 260])
  with pytest.raises(ValueError, match="more than length=2"):
    tok.encode_response("abc", length=2)
def test_hf_from_directory_takes_specials_from_tokenizer_config(tmp_path):
  _train_hf(str(tmp_path / "tokenizer.json"))
  config = {"bos_token": {"__type": "AddedToken", "content": "</s>"}, "eos_token": "<s>",
            "pad_token": "<unk>", "add_bos_token": True}
  (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
  tok = T.HFTokenizer.from_directory(str(tmp_path))
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.add_bos) == (2, 1, 3, True)
  # bos_token null (Qwen): no BOS id; pad absent: the usual names, then EOS.
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": None,
                                                              "eos_token": "</s>"}))
  tok = T.HFTokenizer.from_directory(str(tmp_path))
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.add_bos) == (None, 2, 0, False)
  assert tok.decode([0] + tok.encode("hello world") + [2]) == "hello world"
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eot>"}))
  with pytest.raises(ValueError, match=r"no eos token among \['<eot>'\]"):
    T.HFTokenizer.from_directory(str(tmp_path))
  os.remove(tmp_path / "tokenizer_config.json")
  with pytest.raises(FileNotFoundError, match="no tokenizer_config.json"):
    T.HFTokenizer.from_directory(str(tmp_path))


def test_hf_add_bos_follows_the_post_processor():
  """Llama 3's tokenizer.json adds BOS in its post-processor; Qwen's adds nothing."""
  data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
  llama = T.HFTokenizer.from_directory(os.path.join(data, "hf_chat_llama3.1"))
  qwen = T.HFTokenizer.from_directory(os.path.join(data, "hf_chat_qwen2.5"))
  assert llama.add_bos and llama.bos_id == llama._tok.token_to_id("<|begin_of_text|>")
  assert not qwen.add_bos and qwen.bos_id is None
