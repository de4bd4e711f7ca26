"""focal.models.chat: the real Qwen2.5, Qwen3 and Llama 3.1 chat templates render to the token ids
transformers' apply_chat_template gave (tests/data/hf_chat_*, from tools/make_hf_fixture.py),
plus the sandbox's helpers and the template/stop-id lookup rules."""
import datetime
import json
import os
import shutil

import pytest

from focal.models.chat import ChatTemplate, ChatTemplateError, stop_ids
from focal.tokenizers import HFTokenizer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FAMILIES = ["qwen2.5", "qwen3", "llama3.1"]


def _fixture(family):
  directory = os.path.join(DATA, f"hf_chat_{family}")
  with open(os.path.join(directory, "expected.json")) as f:
    return directory, json.load(f)


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_match_apply_chat_template(family):
  directory, expected = _fixture(family)
  tokenizer = HFTokenizer.from_directory(directory)
  chat = ChatTemplate.from_directory(directory)
  assert len(expected["cases"]) >= 3
  for case in expected["cases"]:
    text = chat.render(case["messages"], add_generation_prompt=True, **case["kwargs"])
    assert text == case["text"]
    assert chat.encode(case["messages"], tokenizer, **case["kwargs"]) == case["ids"]


@pytest.mark.parametrize("family", FAMILIES)
def test_special_tokens_and_stop_ids_match_transformers(family):
  directory, expected = _fixture(family)
  tokenizer = HFTokenizer.from_directory(directory)
  assert (tokenizer.bos_id, tokenizer.eos_id) == (expected["bos_id"], expected["eos_id"])
  if expected["pad_id"] is not None:
    assert tokenizer.pad_id == expected["pad_id"]
  assert list(stop_ids(directory, tokenizer)) == expected["stop_ids"]
  # add_bos says whether transformers' plain `tokenizer(text)` starts with BOS.
  with_specials = expected["plain_ids_with_specials"]
  plain = tokenizer.encode(expected["plain_text"])
  assert with_specials == ([tokenizer.bos_id] + plain if tokenizer.add_bos else plain)


def test_generation_prompt_is_the_only_difference():
  directory, _ = _fixture("qwen2.5")
  chat = ChatTemplate.from_directory(directory)
  messages = [{"role": "user", "content": "Hi"}]
  with_prompt = chat.render(messages)
  without = chat.render(messages, add_generation_prompt=False)
  assert with_prompt == without + "<|im_start|>assistant\n"
  assert without.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")


def test_sandbox_helpers():
  tojson = ChatTemplate("{{ x | tojson }}|{{ x | tojson(indent=2) }}").render(
      [{"role": "user"}], x={"b": "<é>", "a": [1]})
  assert tojson == '{"b": "<é>", "a": [1]}|' + json.dumps({"b": "<é>", "a": [1]}, indent=2,
                                                          ensure_ascii=False)
  before = datetime.datetime.now().strftime("%d %b %Y")
  today = ChatTemplate("{{ strftime_now('%d %b %Y') }}").render([{"role": "user"}])
  assert today in (before, datetime.datetime.now().strftime("%d %b %Y"))
  gen = "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
  assert ChatTemplate(gen).render([{"role": "user", "content": "a"}]) == "[a]"
  loops = "{% for i in range(5) %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}"
  assert ChatTemplate(loops).render([{"role": "user"}]) == "01"
  # trim_blocks / lstrip_blocks as transformers sets them: block lines leave no whitespace.
  assert ChatTemplate("  {% if true %}\nx\n  {% endif %}\n").render([{"role": "u"}]) == "x\n"


def test_template_errors_are_clear():
  refuse = ChatTemplate("{{ raise_exception('only user turns') }}", source="ckpt")
  with pytest.raises(ChatTemplateError, match="chat template of ckpt: only user turns"):
    refuse.render([{"role": "user", "content": "x"}])
  with pytest.raises(ChatTemplateError, match="unsafe|access"):  # the sandbox holds
    ChatTemplate("{{ messages.__class__.__mro__ }}").render([{"role": "user"}])
  with pytest.raises(ChatTemplateError, match="has no chat template"):
    ChatTemplate(None, source="base-model").render([{"role": "user", "content": "x"}])
  with pytest.raises(ValueError, match="empty conversation"):
    ChatTemplate("x").render([])
  with pytest.raises(ValueError, match="message 1 must be a mapping with a 'role'"):
    ChatTemplate("x").render([{"role": "user"}, "hello"])


def test_template_sources(tmp_path):
  directory, _ = _fixture("qwen2.5")
  shutil.copytree(directory, tmp_path / "ckpt")
  ckpt = tmp_path / "ckpt"
  config = json.loads((ckpt / "tokenizer_config.json").read_text())
  config["chat_template"] = [{"name": "tool_use", "template": "T"},
                             {"name": "default", "template": "D{{ eos_token }}"}]
  (ckpt / "tokenizer_config.json").write_text(json.dumps(config))
  assert ChatTemplate.from_directory(str(ckpt)).render([{"role": "user"}]) == "D<|im_end|>"
  (ckpt / "chat_template.jinja").write_text("J{{ messages[0].content }}")  # wins, as in HF
  assert ChatTemplate.from_directory(str(ckpt)).render([{"role": "user", "content": "1"}]) == "J1"
  config["chat_template"] = [{"name": "tool_use", "template": "T"}]
  (ckpt / "tokenizer_config.json").write_text(json.dumps(config))
  os.remove(ckpt / "chat_template.jinja")
  with pytest.raises(ValueError, match="no 'default'"):
    ChatTemplate.from_directory(str(ckpt))


def test_stop_ids_sources(tmp_path):
  directory, _ = _fixture("llama3.1")
  shutil.copytree(directory, tmp_path / "ckpt")
  ckpt = str(tmp_path / "ckpt")
  tokenizer = HFTokenizer.from_directory(ckpt)
  path = os.path.join(ckpt, "generation_config.json")
  for value, expected in ((7, (7,)), ([9, 7, 9], (9, 7))):
    with open(path, "w") as f:
      json.dump({"eos_token_id": value}, f)
    assert stop_ids(ckpt, tokenizer) == expected
  with open(path, "w") as f:
    json.dump({"eos_token_id": "</s>"}, f)
  with pytest.raises(ValueError, match="eos_token_id must be an int or a non-empty list"):
    stop_ids(ckpt, tokenizer)
  os.remove(path)
  assert stop_ids(ckpt, tokenizer) == (tokenizer.eos_id,)
