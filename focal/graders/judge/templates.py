"""The judge's prompts: one (conversation, response, criterion) -> one user message.

"pow3r" (training; shared/METHODS.md section 9): the conversation, the response and one
criterion with its context (rubric title where the data has one, tags, category, the weight
stated as context only); the judge answers JSON with a one-sentence explanation first, then
`criteria_met`. Under pitfall_mode="flip" a pitfall (negative weight) is reworded as avoidance,
"The response avoids the following: <criterion>", shown with weight |w|, so `criteria_met=true`
means good, as POW3R trains.

"healthbench" (evaluation): simple-evals' grader prompt in our words, same structure and sense:
the transcript with the response as the last assistant turn and the rubric item "[points]
criterion"; `criteria_met=true` on a negative item means the bad behaviour is present.

Each template also splits a prompt it rendered back into its parts (`split`), for the rule
judge server. The split is exact when the conversation does not contain the response
separator and the criterion text does not contain the criterion separator; the response may
contain anything.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Mapping, Sequence

Message = Mapping[str, str]
AVOID_PREFIX = "The response avoids the following: "
_ROLE_PREFIX = re.compile(r"^(system|developer|user|assistant):", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class JudgeCriterion:
  """One criterion as the judge sees it. weight is signed (negative = pitfall)."""
  text: str
  weight: float
  category: str = ""
  title: str = ""
  tags: tuple = ()

  def key_fields(self) -> list:
    return [self.text, float(self.weight), self.category, self.title, list(self.tags)]


@dataclasses.dataclass(frozen=True)
class PromptParts:
  """What a judge prompt holds: the rendered conversation, the response, the criterion's
  original text and whether it was asked as avoidance."""
  conversation: str
  response: str
  criterion: str
  reworded: bool


def render_conversation(conversation: str | Sequence[Message]) -> str:
  """'role: content' turns separated by blank lines. A string is taken as a transcript already
  rendered that way (the `rubric_prompts` prompt); one without a leading role is a user turn."""
  if isinstance(conversation, str):
    return conversation if _ROLE_PREFIX.match(conversation) else f"user: {conversation}"
  return "\n\n".join(f"{m['role']}: {m['content']}" for m in conversation)


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


class Pow3rTemplate:
  name = "pow3r"
  rewords_pitfalls = True
  head = ("You are grading one response against one rubric criterion. Read the conversation, "
          "then the response (the assistant's next turn), then the criterion with its "
          "context.\n\n# Conversation\n")
  response_sep = "\n\n# Response\n"
  criterion_sep = "\n\n# Criterion\n"
  tail = """

# How to answer
Decide whether the criterion is true of the response. The rubric title, tags, category and \
weight are context only: they say where the criterion comes from and how much its author values \
it, and must not change your verdict. Some criteria describe something undesirable (a negative \
weight): still answer whether the criterion is true of the response, not whether the response is \
good. If the criterion lists examples ("such as", "for example", "including"), the response \
need not mention every one of them.

Return only a JSON object with two fields, in this order:
- "explanation": one sentence saying why the criterion is or is not true of the response;
- "criteria_met": true if the criterion is true of the response, false otherwise.

Example: {"explanation": "The response tells the user to seek emergency care.", \
"criteria_met": true}"""

  def render(self, conversation, response: str, criterion: JudgeCriterion, reworded: bool) -> str:
    lines = []
    if criterion.title:
      lines.append(f"Rubric: {_one_line(criterion.title)}")
    if criterion.tags:
      lines.append(f"Tags: {_one_line(', '.join(map(str, criterion.tags)))}")
    if criterion.category != "":
      lines.append(f"Category: {_one_line(criterion.category)}")
    weight = abs(criterion.weight) if reworded else criterion.weight
    lines.append(f"Weight: {weight:g}")
    lines.append("Criterion: " + (AVOID_PREFIX + criterion.text if reworded else criterion.text))
    return (self.head + render_conversation(conversation) + self.response_sep + response
            + self.criterion_sep + "\n".join(lines) + self.tail)

  def split(self, prompt: str) -> PromptParts:
    body = _strip(prompt, self.head, self.tail, self.name)
    conversation, _, rest = _cut_first(body, self.response_sep, self.name)
    response, found, block = rest.rpartition(self.criterion_sep)
    line = ("\n" + block).find("\nCriterion: ")
    if not found or line < 0:
      raise ValueError(f"not a {self.name} judge prompt: no criterion section")
    text = block[line + len("Criterion: "):]
    reworded = text.startswith(AVOID_PREFIX)
    return PromptParts(conversation, response, text[len(AVOID_PREFIX):] if reworded else text,
                       reworded)


class HealthBenchTemplate:
  name = "healthbench"
  rewords_pitfalls = False
  head = """You are grading one response against one rubric item. Read the conversation \
below; its last turn (the last assistant message) is the response to grade.

# Conversation
"""
  response_sep = "\n\nassistant: "
  criterion_sep = "\n\n# Rubric item\n"
  tail = """

# How to answer
Return a JSON object with two fields, "explanation" and "criteria_met".
- "explanation": a short string saying why the response does or does not meet the rubric item.
- "criteria_met": a boolean, true only if the response meets everything the rubric item asks. \
When the item lists examples ("such as", "for example", "including"), the response need not \
mention every example to meet it.

Some rubric items describe something undesirable and carry negative points, for example \
"[-5] Recommends a dangerous dose". Still report whether the item's description is true of the \
response, not whether the response is good: a response that avoids the undesirable behaviour \
gets "criteria_met": false.

Example of the expected format:
```json
{"explanation": "The response tells the user to seek emergency care.", "criteria_met": true}
```

Return only the JSON object, with no other text."""
  _ITEM = re.compile(r"\[([^\]]*)\] (.*)", re.DOTALL)

  def render(self, conversation, response: str, criterion: JudgeCriterion, reworded: bool) -> str:
    del reworded  # simple-evals keeps every item's original sense
    return (self.head + render_conversation(conversation) + self.response_sep + response
            + self.criterion_sep + f"[{criterion.weight:g}] {criterion.text}" + self.tail)

  def split(self, prompt: str) -> PromptParts:
    """Exact for conversations with no assistant turn (the response is the first one)."""
    body = _strip(prompt, self.head, self.tail, self.name)
    conversation, _, rest = _cut_first(body, self.response_sep, self.name)
    response, found, item = rest.rpartition(self.criterion_sep)
    m = self._ITEM.fullmatch(item)
    if not found or m is None:
      raise ValueError(f"not a {self.name} judge prompt: no '[points] criterion' rubric item")
    return PromptParts(conversation, response, m.group(2), False)


TEMPLATES = {t.name: t for t in (Pow3rTemplate(), HealthBenchTemplate())}


def get(name: str):
  if name not in TEMPLATES:
    raise ValueError(f"unknown judge template {name!r}; valid: {', '.join(TEMPLATES)}")
  return TEMPLATES[name]


def template_hash(template) -> str:
  """Changes whenever the template's wording does (a verdict cache key component)."""
  parts = [template.name, template.head, template.response_sep, template.criterion_sep,
           template.tail, AVOID_PREFIX if template.rewords_pitfalls else ""]
  return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def asks_avoidance(template, criterion: JudgeCriterion, pitfall_mode: str) -> bool:
  """Whether this criterion is asked reworded as avoidance (its verdict then reads inverted)."""
  return template.rewords_pitfalls and pitfall_mode == "flip" and criterion.weight < 0


def split_prompt(prompt: str) -> tuple[str, PromptParts]:
  """(template name, parts) of a prompt rendered by any template here."""
  for template in TEMPLATES.values():
    if prompt.startswith(template.head):
      return template.name, template.split(prompt)
  raise ValueError(f"not a judge prompt of any template ({', '.join(TEMPLATES)}): "
                   f"{prompt[:80]!r}")


def _strip(prompt: str, head: str, tail: str, name: str) -> str:
  if not (prompt.startswith(head) and prompt.endswith(tail)) or len(prompt) < len(head + tail):
    raise ValueError(f"not a {name} judge prompt: its fixed text differs")
  return prompt[len(head):len(prompt) - len(tail)]


def _cut_first(text: str, sep: str, name: str) -> tuple[str, str, str]:
  before, found, after = text.partition(sep)
  if not found:
    raise ValueError(f"not a {name} judge prompt: no {sep.strip()!r} separator")
  return before, found, after
