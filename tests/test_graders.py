import json
import re

import numpy as np
import pytest

from focal.graders import ContainsGrader, LengthGrader, RegexGrader, Verdict, grade_texts
from focal.graders.stage import RulesGrader


def test_regex_grader():
  g = RegexGrader(r"\b\d+(\.\d+)? ?mg\b")
  assert g.grade("take 200 mg twice").score == 1.0
  assert g.grade("take two tablets").score == 0.0
  assert g.grade("anything").valid
  whole = RegexGrader(r"yes|no", flags=re.IGNORECASE, fullmatch=True)
  assert whole.grade("Yes").score == 1.0 and whole.grade("yes, sure").score == 0.0
  assert not g.grade(None).valid
  with pytest.raises(re.error):
    RegexGrader("(unclosed")


def test_contains_grader_modes():
  any_ = ContainsGrader(["ohm", "Omega"])
  assert any_.grade("The unit is the OHM").score == 1.0
  all_ = ContainsGrader(["ohm", "omega"], mode="all")
  v = all_.grade("the ohm")
  assert v.score == 0.0 and "omega" in v.reason
  assert ContainsGrader("Ohm", case_sensitive=True).grade("ohm").score == 0.0
  word = ContainsGrader("ohm", whole_word=True)
  assert word.grade("ohms law").score == 0.0 and word.grade("an ohm.").score == 1.0
  with pytest.raises(ValueError):
    ContainsGrader([])
  with pytest.raises(ValueError):
    ContainsGrader("x", mode="most")


def test_length_grader_bounds():
  g = LengthGrader(min_len=2, max_len=4, unit="words")
  assert [g.grade(t).score for t in ("one", "one two", "a b c d", "a b c d e")] == [0, 1, 1, 0]
  chars = LengthGrader(max_len=5)
  assert chars.grade("12345").score == 1.0 and chars.grade("123456").score == 0.0
  with pytest.raises(ValueError):
    LengthGrader()
  with pytest.raises(ValueError):
    LengthGrader(min_len=5, max_len=1)


class Exploding:
  def grade(self, text):
    raise RuntimeError("boom")


class OutOfRange:
  def grade(self, text):
    return Verdict(2.0, True)


def test_grade_texts_shapes_padding_and_invalid():
  graders = [[ContainsGrader("ohm"), LengthGrader(max_len=10)],
             [Exploding(), OutOfRange(), RegexGrader("x")]]
  texts = [["the ohm", "a very long answer without it"], ["x", None]]
  scores, valid = grade_texts(graders, texts, max_criteria=4)
  assert scores.shape == valid.shape == (2, 2, 4) and scores.dtype == np.float32
  np.testing.assert_array_equal(scores[0], [[1, 1, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(valid[0], [[1, 1, 0, 0], [1, 1, 0, 0]])
  # A grader failure, an out-of-range score and a missing text are invalid, not 0.
  np.testing.assert_array_equal(valid[1], [[0, 0, 1, 0], [0, 0, 0, 0]])
  assert scores[1, 0, 2] == 1.0
  with pytest.raises(ValueError, match="same number of rollouts"):
    grade_texts(graders, [["a"], ["b", "c"]])
  with pytest.raises(ValueError, match="do not fit"):
    grade_texts(graders, texts, max_criteria=2)


def test_check_scores_refuses_out_of_range_and_nonfinite_valid_scores():
  from focal.graders.base import check_scores
  scores = np.array([[[0.0, 1.0, 0.5]], [[np.nan, 4.67, -3.33]]], np.float32)
  valid = np.array([[[True, True, True]], [[False, True, True]]])
  with pytest.raises(ValueError, match=re.escape("scores[1, 0, 1] = 4.67") + ".*in \\[0, 1\\].*"
                     "2 such verdict"):
    check_scores(scores, valid)
  # Slots without a valid verdict may hold anything; they come back as 0.
  ok = check_scores(scores, valid & (scores >= 0.0) & (scores <= 1.0))
  np.testing.assert_array_equal(ok, [[[0.0, 1.0, 0.5]], [[0.0, 0.0, 0.0]]])
  np.testing.assert_array_equal(check_scores(scores, valid, clip=True),
                                [[[0.0, 1.0, 0.5]], [[0.0, 1.0, 0.0]]])
  valid[1, 0, 0] = True  # a valid NaN is never clipped into range
  with pytest.raises(ValueError, match=re.escape("scores[1, 0, 0] = nan") + ".*must be finite"):
    check_scores(scores, valid, clip=True)
  with pytest.raises(ValueError, match="valid must be a bool array"):
    check_scores(scores, valid.astype(int))


def test_rules_grader_invalid_frac_counts_real_criteria_only():
  # Prompt 0 has two criteria, prompt 1 one (its second slot is padding): 6 real verdicts of 8.
  contains = lambda word: {"rule": json.dumps({"contains": word})}
  criteria = [[contains("ohm"), contains("volt")], [contains("ohm")]]
  mask = np.array([[True, True], [True, False]])
  responses = [["an ohm", "a volt"], ["ohm", "amp"]]
  scores, valid, stats = RulesGrader().grade(None, responses, criteria, mask)
  np.testing.assert_array_equal(valid, np.broadcast_to(mask[:, None, :], (2, 2, 2)))
  np.testing.assert_array_equal(scores[:, :, 0], [[1, 0], [1, 0]])
  assert stats["invalid_frac"] == 0.0  # padding is not an invalid verdict
  responses[1][0] = None  # a rollout that could not be decoded: its one real verdict is missing
  _, valid, stats = RulesGrader().grade(None, responses, criteria, mask)
  assert not valid[1, 0].any()
  assert stats["invalid_frac"] == pytest.approx(1 / 6)
