"""Judge prompt templates: what they show, and the exact split back into parts."""
import pytest
from hypothesis import given, settings, strategies as st

from focal.graders.judge import templates as T

# Responses may hold anything, the templates' own separators included.
ANY_TEXT = st.lists(st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["\n\n# Response\n", "\n\n# Criterion\n", "\n\nassistant: ", "\n\n# Rubric item\n",
     "\nCriterion: ", "[-3] ", T.AVOID_PREFIX, "\udcff"]), max_size=8).map("".join)
PLAIN = st.text(st.characters(codec="ascii", exclude_characters="\x00"), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(PLAIN, ANY_TEXT, PLAIN, st.floats(-10, 10, allow_nan=False), PLAIN, st.booleans())
def test_pow3r_split_inverts_render(question, response, text, weight, title, reworded):
  template = T.get("pow3r")
  crit = T.JudgeCriterion(text, weight, "safety", title, ("axis:accuracy",))
  prompt = template.render(question, response, crit, reworded)
  name, parts = T.split_prompt(prompt)
  assert name == "pow3r"
  assert parts == T.PromptParts(T.render_conversation(question), response, text, reworded)


@settings(max_examples=200, deadline=None)
@given(PLAIN, ANY_TEXT, PLAIN, st.floats(-10, 10, allow_nan=False))
def test_healthbench_split_inverts_render(question, response, text, weight):
  template = T.get("healthbench")
  crit = T.JudgeCriterion(text, weight)
  name, parts = T.split_prompt(template.render(question, response, crit, True))
  assert name == "healthbench"
  assert parts == T.PromptParts(T.render_conversation(question), response, text, False)


def test_pow3r_shows_the_context_and_rewords_pitfalls():
  template = T.get("pow3r")
  crit = T.JudgeCriterion("Recommends a\ndangerous dose", -5.0, "safety\nfirst", "Dosing",
                          ("axis:safety", "level:example"))
  prompt = template.render([{"role": "system", "content": "be kind"},
                            {"role": "user", "content": "dose?"}], "2 g", crit, True)
  assert "system: be kind\n\nuser: dose?\n\n# Response\n2 g\n\n# Criterion\n" in prompt
  assert ("Rubric: Dosing\nTags: axis:safety, level:example\nCategory: safety first\n"
          "Weight: 5\nCriterion: The response avoids the following: Recommends a\n"
          "dangerous dose") in prompt
  plain = template.render("dose?", "2 g", crit, False)
  assert "Weight: -5\nCriterion: Recommends a" in plain and T.AVOID_PREFIX not in plain
  assert "must not change your verdict" in plain
  assert plain.index('"explanation"') < plain.index('"criteria_met"')


def test_which_criteria_are_asked_as_avoidance():
  pit, good = T.JudgeCriterion("x", -1.0), T.JudgeCriterion("x", 1.0)
  pow3r, hb = T.get("pow3r"), T.get("healthbench")
  assert T.asks_avoidance(pow3r, pit, "flip")
  assert not T.asks_avoidance(pow3r, pit, "signed")
  assert not T.asks_avoidance(pow3r, good, "flip")
  assert not T.asks_avoidance(hb, pit, "flip")


def test_template_hash_tracks_the_wording():
  hashes = {T.template_hash(t) for t in T.TEMPLATES.values()}
  assert len(hashes) == 2
  reworded = T.Pow3rTemplate()
  reworded.tail = reworded.tail + " Be strict."
  assert T.template_hash(reworded) not in hashes
  assert T.template_hash(T.Pow3rTemplate()) == T.template_hash(T.get("pow3r"))


def test_render_conversation():
  assert T.render_conversation("hi") == "user: hi"
  assert T.render_conversation("user: hi\n\nassistant: yo") == "user: hi\n\nassistant: yo"
  assert T.render_conversation([{"role": "user", "content": "a"},
                                {"role": "assistant", "content": "b"}]) == "user: a\n\nassistant: b"


@pytest.mark.parametrize("prompt, message", [
    ("hello", "not a judge prompt of any template"),
    (T.Pow3rTemplate.head + "user: q" + T.Pow3rTemplate.tail, "no '# Response' separator"),
    (T.Pow3rTemplate.head + "user: q\n\n# Response\nr" + T.Pow3rTemplate.tail,
     "no criterion section"),
    (T.HealthBenchTemplate.head + "user: q\n\nassistant: r\n\n# Rubric item\nno points"
     + T.HealthBenchTemplate.tail, "no '\\[points\\] criterion' rubric item"),
])
def test_split_rejects_foreign_prompts(prompt, message):
  with pytest.raises(ValueError, match=message):
    T.split_prompt(prompt)
  with pytest.raises(ValueError, match="unknown judge template 'x'"):
    T.get("x")
