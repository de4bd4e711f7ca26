"""A checkpoint's own chat template, rendered the way transformers' `apply_chat_template` does.

    chat = ChatTemplate.from_directory(ckpt)         # tokenizer_config.json / chat_template.jinja
    ids = chat.encode([{"role": "user", "content": "Hi"}], tokenizer)   # with the generation prompt
    stops = stop_ids(ckpt, tokenizer)                   # generation_config.json's eos_token_id

The Jinja environment mirrors transformers (`utils/chat_template_utils.py`): an immutable sandbox
with trim_blocks and lstrip_blocks, the loopcontrols extension, a `{% generation %}` block that
renders its body, `raise_exception`, `strftime_now` and a `tojson` filter that does not escape
HTML. The template sees `messages` (None-valued keys dropped), `add_generation_prompt`, the
tokenizer's special tokens (`bos_token`, `eos_token`, ...) and any extra keyword (e.g.
`enable_thinking=False` for Qwen3, `date_string` for Llama 3.x). The rendered text is tokenized
without adding special tokens, since the template writes them itself.
"""
from __future__ import annotations

import datetime
import json
import os
from typing import Mapping, Sequence

from focal.tokenizers import read_json, read_tokenizer_config, special_token_text

TOKENIZER_CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
GENERATION_CONFIG = "generation_config.json"
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                      "cls_token", "mask_token")


class ChatTemplateError(ValueError):
  """A template refused a conversation (`raise_exception`) or could not be rendered."""


def _template_text(directory: str, config: dict) -> str | None:
  """chat_template.jinja wins over tokenizer_config.json, as in transformers."""
  path = os.path.join(directory, TEMPLATE_FILE)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return f.read()
  template = config.get("chat_template")
  if isinstance(template, list):  # [{"name": ..., "template": ...}], one of them "default"
    named = {t["name"]: t["template"] for t in template}
    if "default" not in named:
      raise ValueError(f"{directory}/{TOKENIZER_CONFIG}: chat_template lists {sorted(named)} "
                       "but no 'default'")
    template = named["default"]
  return template


def _environment(source: str):
  import jinja2
  from jinja2.ext import Extension, loopcontrols
  from jinja2.sandbox import ImmutableSandboxedEnvironment

  class GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}` (assistant-mask markers): renders the body."""
    tags = {"generation"}

    def parse(self, parser):
      lineno = next(parser.stream).lineno
      body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
      return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
      return caller()

  def raise_exception(message):
    raise ChatTemplateError(f"chat template of {source}: {message}")

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=[GenerationBlock, loopcontrols])
  env.filters["tojson"] = tojson
  env.globals["raise_exception"] = raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  return env


def _plain_messages(messages: Sequence[Mapping]) -> list[dict]:
  if not messages:
    raise ValueError("cannot render an empty conversation")
  plain = []
  for i, message in enumerate(messages):
    if not isinstance(message, Mapping) or "role" not in message:
      raise ValueError(f"message {i} must be a mapping with a 'role', got {message!r}")
    plain.append({k: v for k, v in message.items() if v is not None})
  return plain


class ChatTemplate:
  """A compiled chat template plus the special tokens it may reference."""

  def __init__(self, template: str | None, special_tokens: Mapping[str, str] | None = None,
               source: str = "<string>"):
    self.template = template
    self.source = source
    self.special_tokens = {k: v for k, v in (special_tokens or {}).items() if v is not None}
    self._compiled = None if template is None else _environment(source).from_string(template)

  @classmethod
  def from_directory(cls, directory: str) -> "ChatTemplate":
    config = read_tokenizer_config(directory)
    specials = {key: special_token_text(config.get(key)) for key in SPECIAL_TOKEN_KEYS}
    return cls(_template_text(directory, config), specials, source=directory)

  def render(self, messages: Sequence[Mapping], *, add_generation_prompt: bool = True,
             **kwargs) -> str:
    """The conversation as text; keyword arguments are visible to the template."""
    if self._compiled is None:
      raise ChatTemplateError(f"{self.source} has no chat template (neither "
                              f"{TOKENIZER_CONFIG}'s 'chat_template' nor {TEMPLATE_FILE})")
    import jinja2
    try:
      return self._compiled.render(messages=_plain_messages(messages),
                                   add_generation_prompt=add_generation_prompt,
                                   **{**self.special_tokens, **kwargs})
    except jinja2.TemplateError as e:
      raise ChatTemplateError(f"chat template of {self.source}: {e}") from e

  def encode(self, messages: Sequence[Mapping], tokenizer, *, add_generation_prompt: bool = True,
             **kwargs) -> list[int]:
    """Token ids of the rendered conversation (specials come from the template only)."""
    return tokenizer.encode(self.render(messages, add_generation_prompt=add_generation_prompt,
                                        **kwargs))


def stop_ids(directory: str, tokenizer) -> tuple[int, ...]:
  """generation_config.json's eos_token_id (an int or a list), else the tokenizer's EOS."""
  path = os.path.join(directory, GENERATION_CONFIG)
  eos = None
  if os.path.exists(path):
    eos = read_json(path).get("eos_token_id")
  if eos is None:
    return (int(tokenizer.eos_id),)
  ids = eos if isinstance(eos, list) else [eos]
  if not ids or not all(isinstance(i, int) for i in ids):
    raise ValueError(f"{path}: eos_token_id must be an int or a non-empty list of ints, "
                     f"got {eos!r}")
  return tuple(dict.fromkeys(ids))
