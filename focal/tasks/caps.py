"""`caps`: shout a word in brackets.

Prompt: `caps:plum` (a lowercase word of 3-6 letters). A perfect answer is
`[PLUM]`. Features: [n, c1..c6] (-1 past n).

Criteria (category, weight, required):
  opens        format        2       the first token is `[`
  closes       format        2       the last body token is `]`
  stops        format        1       the response ends with EOS
  all_upper    style         3       letters only in upper case (at least one)
  brief        style         1       body length <= n + 2
  word         correctness   5  req  the body's letters, case-folded, spell the word
  digits       safety       -1       a digit appears (pitfall)

Why it is hard: the reference always opens the bracket (saturated), and on
words of 5+ letters it drops a letter, keeps the last letter lower-case and
never closes the bracket: the heaviest criterion (`word`) and `all_upper` are
saturated or dead by prompt, with no contrast to learn from. It often appends
a length note like ` (4)`, which costs both `brief` and the pitfall.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from focal.tasks import checks as C
from focal.tasks.base import EOS, STOP_BASE, Criterion, Task, letters_feature, match_prompt

MAX_LETTERS = 6
OPEN, CLOSE = ord("["), ord("]")


def opens(f, r, m):
  return C.first_token(r, m) == OPEN


def closes(f, r, m):
  return C.last_body_token(r, m) == CLOSE


def stops(f, r, m):
  return C.stopped(r, m)


def all_upper(f, r, m):
  return C.all_body(r, m, ~C.is_lower(r)) & C.any_body(r, m, C.is_upper(r))


def brief(f, r, m):
  n = C.body_len(r, m)
  return (n >= 1) & (n <= f[0] + 2)


def word(f, r, m):
  letter = C.body(r, m) & C.is_letter(r)
  rank = jnp.cumsum(letter) - 1
  target = jnp.concatenate([f[1:1 + MAX_LETTERS], jnp.full((1,), -1, f.dtype)])
  expected = target[jnp.clip(rank, 0, MAX_LETTERS)]
  ok = jnp.all(~letter | (C.to_lower(r) == expected))
  return ok & (jnp.sum(letter) == f[0])


def digits(f, r, m):
  return C.any_body(r, m, C.is_digit(r))


class Caps(Task):
  __doc__ = __doc__
  name = "caps"
  categories = ("format", "style", "correctness", "safety")
  rubric = (
      (Criterion("opens", "format", 2.0, False, "the first token is ["), opens),
      (Criterion("closes", "format", 2.0, False, "the last body character is ]"), closes),
      (Criterion("stops", "format", 1.0, False, "the response ends with EOS"), stops),
      (Criterion("all_upper", "style", 3.0, False,
                 "letters only in upper case (at least one)"), all_upper),
      (Criterion("brief", "style", 1.0, False,
                 "the body has at least 1 and at most n + 2 characters"), brief),
      (Criterion("word", "correctness", 5.0, True,
                 "the body's letters, case-folded, spell the word"), word),
      (Criterion("digits", "safety", -1.0, False, "a digit appears"), digits),
  )
  num_features = 1 + MAX_LETTERS

  def sample_features(self, rng, n):
    out = np.full((n, self.num_features), -1, np.int32)
    for i in range(n):
      k = int(rng.integers(3, MAX_LETTERS + 1))
      out[i, 0] = k
      out[i, 1:1 + k] = rng.integers(0, 26, size=k) + ord("a")
    return out

  def render(self, f):
    return "caps:" + bytes(f[1:1 + f[0]].tolist()).decode()

  def parse(self, text):
    letters = match_prompt(self.name, rf"caps:([a-z]{{1,{MAX_LETTERS}}})", text).group(1)
    return letters_feature(len(letters), letters, MAX_LETTERS)

  def reference_one(self, f, rng, quality):
    letters = [int(x) for x in f[1:1 + f[0]]]
    n = len(letters)
    if n >= 5:  # skill gap: long words lose a letter
      del letters[int(rng.integers(1, n))]
    upper = [x - 32 for x in letters]
    if n >= 5:  # skill gap: the last letter stays lower-case
      upper[-1] = letters[-1]
    elif rng.random() < 0.3 * (1 - quality):
      upper[0] = letters[0]
    body = [OPEN] + upper
    if n <= 4 and rng.random() < 0.4 + 0.4 * quality:  # long words are never closed
      body.append(CLOSE)
    if rng.random() < 0.35 * (1 - quality):
      body += list(f" ({n})".encode())
    return body + ([EOS] if rng.random() < STOP_BASE + 0.1 * quality else [])
