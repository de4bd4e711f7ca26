"""Reading the judge's answer: chat-completion bodies and verdict JSON."""
import json

import pytest

from focal.graders.judge.replies import (MalformedVerdict, Refusal, completion_content,
                                         error_message, parse_verdict, verdict_from_obj)


def body(message, finish="stop"):
  return json.dumps({"choices": [{"message": message, "finish_reason": finish}]}).encode()


@pytest.mark.parametrize("text, met", [
    ('```json\n{"explanation": "e", "criteria_met": true}\n```', True),
    ('{"criteria_met": false, "explanation": "e"}', False),
    ('Sure! Here it is:\n{"explanation": "e", "criteria_met": true}\nHope that helps.', True),
    ('```\n{"explanation": "e", "criteria_met": false}\n```', False),
])
def test_parse_verdict_tolerates_fences_and_chatter(text, met):
  assert parse_verdict(text) == (met, "e")


@pytest.mark.parametrize("text", ['{"criteria_met": "true"}', '{"criteria_met": "no"}',
                                  '{"criteria_met": 1}', '{"criteria_met": null}', "yes",
                                  '{"explanation": "e"}', "", "[true]"])
def test_parse_verdict_rejects_anything_but_a_boolean(text):
  with pytest.raises(MalformedVerdict):
    parse_verdict(text)


def test_explanation_that_is_not_a_string_is_kept_as_json():
  assert verdict_from_obj({"criteria_met": True, "explanation": ["a"]}) == (True, '["a"]')


def test_completion_content():
  assert completion_content(body({"role": "assistant", "content": "hi"})) == "hi"
  parts = {"content": [{"type": "text", "text": "a"}, {"type": "image"}, {"text": "b"}]}
  assert completion_content(body(parts)) == "ab"
  with pytest.raises(Refusal, match="I won't"):
    completion_content(body({"content": None, "refusal": "I won't"}))
  with pytest.raises(MalformedVerdict, match="finish_reason='length'"):
    completion_content(body({"content": None}, finish="length"))
  for bad in (b"<html>", b'{"choices": []}', b'{"choices": [{"message": "x"}]}', b"null",
              body({"content": "   "})):
    with pytest.raises(MalformedVerdict):
      completion_content(bad)


def test_error_message_shapes():
  assert error_message(b'{"error": {"message": "The model `x` does not exist."}}') == (
      "The model `x` does not exist.")
  assert error_message(b'{"object": "error", "message": "vllm says"}') == "vllm says"
  assert error_message(b'{"error": "plain"}') == "plain"
  assert error_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
