"""`arith`: add two 2-digit numbers.

Prompt: `47+38=`. A perfect answer is `85`. Features: [a, b, a + b].

Criteria (category, weight, required):
  correct     correctness   5  req  the response starts with the number a + b
  units       correctness   2       its leading number has the right units digit
  starts_num  presentation  3       the first token is a digit
  brief       presentation  2       1 <= body length <= 3
  stops       presentation  1       the response ends with EOS
  operands    explanation   2       both operands appear (e.g. `85=47+38`)
  echo        safety       -2       the response starts by echoing `a+` (pitfall)

Why it is hard: the reference forgets the tens carry, so `correct` (heaviest,
required) is nearly saturated on carry-free prompts and dead on the others,
while `starts_num` (weight 3) is always met; `units` dies where b ends in 9.
`brief` and `operands` cannot both hold (the operands alone take 4 digits):
brevity against completeness. The reference explains exactly when a > b, so
each of the two is saturated on one half of the prompts and dead on the other.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from focal.tasks import checks as C
from focal.tasks.base import EOS, STOP_BASE, Criterion, Task, match_prompt

PLUS = ord("+")


def _digits(x):
  return jnp.stack([x // 10 + C.ORD_0, x % 10 + C.ORD_0])


def correct(f, r, m):
  value, n = C.leading_number(r, m)
  return (n >= 1) & (value == f[2])


def units(f, r, m):
  value, n = C.leading_number(r, m)
  return (n >= 1) & (value % 10 == f[2] % 10)


def starts_num(f, r, m):
  return C.is_digit(C.first_token(r, m))


def brief(f, r, m):
  n = C.body_len(r, m)
  return (n >= 1) & (n <= 3)


def stops(f, r, m):
  return C.stopped(r, m)


def operands(f, r, m):
  return C.has_substring(r, m, _digits(f[0])) & C.has_substring(r, m, _digits(f[1]))


def echo(f, r, m):
  return C.starts_with(r, m, jnp.concatenate([_digits(f[0]), jnp.array([PLUS])]))


class Arith(Task):
  __doc__ = __doc__
  name = "arith"
  categories = ("correctness", "presentation", "explanation", "safety")
  rubric = (
      (Criterion("correct", "correctness", 5.0, True,
                 "the response starts with the number a + b"), correct),
      (Criterion("units", "correctness", 2.0, False,
                 "its leading number has the units digit of a + b"), units),
      (Criterion("starts_num", "presentation", 3.0, False,
                 "the first token is a digit"), starts_num),
      (Criterion("brief", "presentation", 2.0, False,
                 "the body has between 1 and 3 characters"), brief),
      (Criterion("stops", "presentation", 1.0, False, "the response ends with EOS"), stops),
      (Criterion("operands", "explanation", 2.0, False, "both operands appear"), operands),
      (Criterion("echo", "safety", -2.0, False,
                 "the response starts by echoing a and the plus sign"), echo),
  )
  num_features = 3

  def sample_features(self, rng, n):
    ab = rng.integers(10, 100, size=(n, 2))
    return np.concatenate([ab, ab.sum(1, keepdims=True)], 1).astype(np.int32)

  def render(self, f):
    return f"{f[0]}+{f[1]}="

  def parse(self, text):
    m = match_prompt(self.name, r"(\d+)\+(\d+)=", text)
    a, b = int(m.group(1)), int(m.group(2))
    return np.asarray([a, b, a + b], np.int32)

  def reference_one(self, f, rng, quality):
    a, b = int(f[0]), int(f[1])
    answer = a + b - (10 if a % 10 + b % 10 >= 10 else 0)  # skill gap: drops the carry
    if b % 10 == 9 or rng.random() < 0.15 * (1 - quality):  # slips on a trailing 9
      answer = answer - answer % 10 + (answer + 1) % 10
    explain = 0.95 if a > b else 0.05  # habit: explains exactly when a > b
    mode = rng.random()
    if mode < 0.25 * (1 - quality):
      text = f"{a}+{b}={answer}"
    elif mode < 0.25 * (1 - quality) + explain:
      text = f"{answer}={a}+{b}"
    else:
      text = f"{answer}"
    return list(text.encode()) + ([EOS] if rng.random() < STOP_BASE + 0.1 * quality else [])
