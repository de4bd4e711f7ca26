"""`repeat`: write one letter exactly n times.

Prompt: `rep:k*7` (a letter of either case, n in 2..15). A perfect answer is
`kkkkkkk`. Features: [letter, n].

Criteria (category, weight, required):
  nonempty    format        3       the body has at least one token
  only_letter format        2       every body token is the letter
  stops       format        1  req  the response ends with EOS
  exact       correctness   5  req  the letter appears exactly n times
  near        correctness   1       the count is within 1 of n
  other_case  safety       -2       the letter appears in the other case (pitfall)

Why it is hard: counting is exact for small n, noisy for mid n and off by 2-3
for large n in the reference, so the heaviest criterion is contrastive or dead
depending on the prompt, while the heavy `nonempty` is always met. Long runs
are written in groups of five (`only_letter` dead there), and asked for a
capital the reference starts with the small letter (pitfall hit every time,
so the single-criterion safety category lags). The low-weight `near` is the
one smooth signal toward `exact`.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from focal.tasks import checks as C
from focal.tasks.base import EOS, STOP_BASE, Criterion, Task, match_prompt


def _other_case(x):
  return jnp.where(C.is_upper(x), x + 32, x - 32)


def nonempty(f, r, m):
  return C.body_len(r, m) >= 1


def only_letter(f, r, m):
  return C.all_body(r, m, r == f[0])


def stops(f, r, m):
  return C.stopped(r, m)


def exact(f, r, m):
  return C.count(r, m, f[0]) == f[1]


def near(f, r, m):
  return jnp.abs(C.count(r, m, f[0]) - f[1]) <= 1


def other_case(f, r, m):
  return C.contains(r, m, _other_case(f[0]))


class Repeat(Task):
  __doc__ = __doc__
  name = "repeat"
  categories = ("format", "correctness", "safety")
  rubric = (
      (Criterion("nonempty", "format", 3.0, False,
                 "the body has at least one character"), nonempty),
      (Criterion("only_letter", "format", 2.0, False,
                 "every body character is the letter"), only_letter),
      (Criterion("stops", "format", 1.0, True, "the response ends with EOS"), stops),
      (Criterion("exact", "correctness", 5.0, True, "the letter appears exactly n times"), exact),
      (Criterion("near", "correctness", 1.0, False,
                 "the letter appears n - 1 to n + 1 times"), near),
      (Criterion("other_case", "safety", -2.0, False,
                 "the letter appears in the other case"), other_case),
  )
  num_features = 2

  def sample_features(self, rng, n):
    letter = rng.integers(0, 26, size=n) + np.where(rng.random(n) < 0.5, ord("a"), ord("A"))
    return np.stack([letter, rng.integers(2, 16, size=n)], 1).astype(np.int32)

  def render(self, f):
    return f"rep:{chr(f[0])}*{f[1]}"

  def parse(self, text):
    m = match_prompt(self.name, r"rep:([A-Za-z])\*(\d+)", text)
    return np.asarray([ord(m.group(1)), int(m.group(2))], np.int32)

  def reference_one(self, f, rng, quality):
    x, n = int(f[0]), int(f[1])
    if n <= 5:
      k = n
    elif n <= 9:
      k = n + int(rng.choice([-1, 0, 1]))
    else:  # skill gap: long runs are miscounted by 2-3
      k = n + int(rng.choice([-3, -2, 2, 3]))
    body = [x] * k
    # Skill gap: asked for a capital, it starts with the small letter.
    if x < ord("a") or rng.random() < 0.3 * (1 - quality):
      body[0] = int(x + 32 if x < ord("a") else x - 32)
    if n >= 10:  # habit: long runs are written in groups of five
      body = body[:5] + [ord(" ")] + body[5:]
    elif rng.random() < 0.2 * (1 - quality) and k > 1:
      body = body[:1] + [ord(" ")] + body[1:]
    return body + ([EOS] if rng.random() < STOP_BASE + 0.1 * quality else [])
