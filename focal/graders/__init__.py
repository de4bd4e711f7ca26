"""Criterion graders: the grader kinds a config names (`kinds`, one module each), the loop's
grader stage (`stage`), host-side programs on decoded text (`rules`), an LLM-judge client
(`judge`), and a local OpenAI-compatible rule judge for the synthetic suite (`rule_server`)."""
from focal.graders.base import Grader, Verdict, grade_texts, safe_grade
from focal.graders.rules import ContainsGrader, LengthGrader, RegexGrader

__all__ = ["ContainsGrader", "Grader", "LengthGrader", "RegexGrader", "Verdict", "grade_texts",
           "safe_grade"]
