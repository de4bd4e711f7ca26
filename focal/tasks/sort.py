"""`sort`: write the prompt's letters in alphabetical order.

Prompt: `sort:dbca` (3-5 distinct lowercase letters, never already sorted). A
perfect answer is `abcd`. Features: [n, l1..l5] (-1 past n).

Criteria (category, weight, required):
  first_min    correctness   4  req  the response starts with the smallest letter
  sorted       correctness   5       the body is exactly the sorted letters
  all_present  completeness  3       every letter appears
  no_extra     style         1       every body token is one of the letters
  no_repeat    style         1       no letter is written twice
  stops        style         1       the response ends with EOS
  copy         safety       -2       the body is the input copied unchanged (pitfall)

Why it is hard: the reference finds the smallest letter unless it is given
last (then it puts it last: the heavy, required `first_min` is saturated or
dead by prompt), sorts three letters well, four sometimes and five never (the
heaviest criterion is dead on 5-letter prompts, which it also writes with
commas). The three style criteria share 3 points between them, so a weighted
sum hardly cares about them.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from focal.tasks import checks as C
from focal.tasks.base import EOS, STOP_BASE, Criterion, Task, letters_feature, match_prompt

MAX_LETTERS = 5


def _letters(f):
  return f[1:1 + MAX_LETTERS]


def _sorted_letters(f):
  live = jnp.arange(MAX_LETTERS) < f[0]
  return jnp.sort(jnp.where(live, _letters(f), 1 << 20))


def first_min(f, r, m):
  return C.first_token(r, m) == _sorted_letters(f)[0]


def sorted_(f, r, m):
  return C.body_equals(r, m, _sorted_letters(f), f[0])


def all_present(f, r, m):
  live = jnp.arange(MAX_LETTERS) < f[0]
  hit = jnp.any((r[None, :] == _letters(f)[:, None]) & C.body(r, m)[None, :], axis=1)
  return jnp.all(~live | hit)


def no_extra(f, r, m):
  return C.all_body(r, m, C.in_set(r, _letters(f)))


def no_repeat(f, r, m):
  return (C.num_distinct_repeats(r, m) == 0) & (C.body_len(r, m) >= 1)


def stops(f, r, m):
  return C.stopped(r, m)


def copy(f, r, m):
  return C.body_equals(r, m, _letters(f), f[0])


class Sort(Task):
  __doc__ = __doc__
  name = "sort"
  categories = ("correctness", "completeness", "style", "safety")
  rubric = (
      (Criterion("first_min", "correctness", 4.0, True,
                 "the response starts with the smallest letter"), first_min),
      (Criterion("sorted", "correctness", 5.0, False,
                 "the body is exactly the letters in alphabetical order"), sorted_),
      (Criterion("all_present", "completeness", 3.0, False, "every letter appears"), all_present),
      (Criterion("no_extra", "style", 1.0, False,
                 "every body character is one of the letters"), no_extra),
      (Criterion("no_repeat", "style", 1.0, False, "no character is written twice"), no_repeat),
      (Criterion("stops", "style", 1.0, False, "the response ends with EOS"), stops),
      (Criterion("copy", "safety", -2.0, False, "the body is the input copied unchanged"), copy),
  )
  num_features = 1 + MAX_LETTERS

  def sample_features(self, rng, n):
    out = np.full((n, self.num_features), -1, np.int32)
    for i in range(n):
      k = int(rng.integers(3, MAX_LETTERS + 1))
      letters = rng.choice(26, size=k, replace=False) + ord("a")
      while np.all(np.diff(letters) > 0):
        rng.shuffle(letters)
      out[i, 0] = k
      out[i, 1:1 + k] = letters
    return out

  def render(self, f):
    return "sort:" + bytes(f[1:1 + f[0]].tolist()).decode()

  def parse(self, text):
    letters = match_prompt(self.name, rf"sort:([a-z]{{1,{MAX_LETTERS}}})", text).group(1)
    return letters_feature(len(letters), letters, MAX_LETTERS)

  def reference_one(self, f, rng, quality):
    letters = [int(x) for x in f[1:1 + f[0]]]
    if rng.random() < 0.2 * (1 - quality):
      body = letters
    else:
      body = sorted(letters)
      n = len(body)
      if letters[-1] == body[0]:  # skill gap: a smallest letter given last is missed
        body = body[1:] + body[:1]
      # Skill gap: four letters get sorted some of the time, five never.
      if (n == 4 and rng.random() > 0.3 + 0.5 * quality) or n == 5:
        body[-2], body[-1] = body[-1], body[-2]
      if rng.random() < 0.3 * (1 - quality):
        body = body + [body[-1]]
      if rng.random() < 0.2 * (1 - quality) + (0.3 if n == 5 else 0.0):
        body = body[:-1]
      if n == 5 or (n == 4 and rng.random() < 0.3):  # habit: long lists get commas
        body = [t for x in body for t in (x, ord(","))][:-1]
    return body + ([EOS] if rng.random() < STOP_BASE + 0.1 * quality else [])
