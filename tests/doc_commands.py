"""The shell commands a document shows, read from the document itself (for
tests/test_scaling_commands.py).

Markdown: every logical line of a fenced `bash`/`sh` block, and every inline code span of the
prose that is a `python` command (optionally after VAR=value assignments). Python files: the
module docstring's lines that start with `python ` and its backticked `python ...` spans.
Continuation lines (a trailing backslash) are joined and `# comments` dropped. A command is
its list of shell words; its key is those words joined by single spaces, so quoting does not
matter (`--config.mesh.shape="(1,8,1)"` reads as `--config.mesh.shape=(1,8,1)`).
"""
from __future__ import annotations

import ast
import re
import shlex

# A `python` command, possibly after environment assignments (XLA_FLAGS=... python train.py).
PYTHON_COMMAND = re.compile(r"^(\w+=\S*\s+)*python\s")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELLS = ("bash", "sh", "shell", "console")


def words(command: str) -> list[str]:
  return shlex.split(command, comments=True)


def key(command_words) -> str:
  return " ".join(command_words)


def logical_lines(text: str) -> list[str]:
  """Lines with backslash continuations joined."""
  return re.sub(r"\\\n\s*", " ", text).splitlines()


def shell_commands(block: str) -> list[list[str]]:
  return [w for w in map(words, logical_lines(block)) if w]


def code_spans(text: str) -> list[str]:
  return [s for s in re.findall(r"`([^`\n]+)`", text) if PYTHON_COMMAND.match(s)]


def markdown_commands(text: str) -> list[list[str]]:
  commands = []
  for lang, body in FENCE.findall(text):
    if lang in SHELLS:
      commands += shell_commands(body)
  prose = FENCE.sub("", text)
  return commands + [words(s) for s in code_spans(prose)]


def markdown_block(text: str, lang: str, containing: str) -> str:
  """The fenced `lang` block of `text` that contains `containing`."""
  blocks = [body for l, body in FENCE.findall(text) if l == lang and containing in body]
  if len(blocks) != 1:
    raise ValueError(f"expected one ```{lang} block containing {containing!r}, "
                     f"found {len(blocks)}")
  return blocks[0]


def docstring_commands(source: str) -> list[list[str]]:
  doc = ast.get_docstring(ast.parse(source)) or ""
  commands = [words(line) for line in logical_lines(doc) if line.strip().startswith("python ")]
  return commands + [words(s) for s in code_spans(doc)]


def document_commands(path: str) -> dict[str, list[str]]:
  """{key: words} of every command `path` shows, in order."""
  with open(path) as f:
    text = f.read()
  found = markdown_commands(text) if path.endswith(".md") else docstring_commands(text)
  return {key(w): w for w in found}
