"""`digitsum`: write n digits that add up to S, avoiding a banned digit.

Prompt: `sum:14 len:3 no:7` (n in 2..5, S in n..9n, a banned digit). A perfect
answer is `653`. Features: [S, n, banned].

Criteria (category, weight, required):
  all_digits   format       2       the body is digits only (non-empty)
  right_len    correctness  3       exactly n body tokens
  sum          correctness  5  req  the digits add up to S
  descending   style        1       digits never increase
  distinct     style        2       no digit repeats
  stops        style        1       the response ends with EOS
  banned       safety      -3       the banned digit appears (pitfall)

Why it is hard: the reference spreads S evenly (digit q = S // n) and only
handles a remainder of 0 or 1, so `sum` is mostly saturated or dead by prompt.
Its even spread repeats digits, so `distinct` is nearly dead, and a third of
the prompts ban exactly q, which is then hit every time. `all_digits` is
always met. `distinct` also conflicts with `sum` on prompts whose S
exceeds the n largest distinct digits (S = 9n, say) or is below 0+1+..+(n-1).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from focal.tasks import checks as C
from focal.tasks.base import EOS, STOP_BASE, Criterion, Task, match_prompt


def all_digits(f, r, m):
  return C.all_body(r, m, C.is_digit(r))


def right_len(f, r, m):
  return C.body_len(r, m) == f[1]


def digit_sum(f, r, m):
  value = jnp.where(C.body(r, m) & C.is_digit(r), r - C.ORD_0, 0)
  return jnp.sum(value) == f[0]


def descending(f, r, m):
  b = C.body(r, m)
  pair = b[:-1] & b[1:]
  return jnp.all(~pair | (r[:-1] >= r[1:])) & jnp.any(b)


def distinct(f, r, m):
  return (C.num_distinct_repeats(r, m) == 0) & (C.body_len(r, m) >= 1)


def stops(f, r, m):
  return C.stopped(r, m)


def banned(f, r, m):
  return C.contains(r, m, f[2] + C.ORD_0)


class DigitSum(Task):
  __doc__ = __doc__
  name = "digitsum"
  categories = ("format", "correctness", "style", "safety")
  rubric = (
      (Criterion("all_digits", "format", 2.0, False,
                 "the body is digits only (at least one)"), all_digits),
      (Criterion("right_len", "correctness", 3.0, False, "exactly n body characters"), right_len),
      (Criterion("sum", "correctness", 5.0, True, "the digits add up to S"), digit_sum),
      (Criterion("descending", "style", 1.0, False, "the digits never increase"), descending),
      (Criterion("distinct", "style", 2.0, False, "no digit repeats"), distinct),
      (Criterion("stops", "style", 1.0, False, "the response ends with EOS"), stops),
      (Criterion("banned", "safety", -3.0, False, "the banned digit appears"), banned),
  )
  num_features = 3

  def sample_features(self, rng, n):
    k = rng.integers(2, 6, size=n)
    s = k + (rng.random(n) * (8 * k + 1)).astype(np.int64)
    # A third of the prompts ban the obvious digit S // n.
    ban = np.where(rng.random(n) < 0.3, s // k, rng.integers(0, 10, size=n))
    return np.stack([s, k, ban], 1).astype(np.int32)

  def render(self, f):
    return f"sum:{f[0]} len:{f[1]} no:{f[2]}"

  def parse(self, text):
    m = match_prompt(self.name, r"sum:(\d+) len:(\d+) no:(\d)", text)
    return np.asarray([int(g) for g in m.groups()], np.int32)

  def reference_one(self, f, rng, quality):
    s, n = int(f[0]), int(f[1])
    q, rem = divmod(s, n)
    digits = [q] * n
    if rem <= 1:  # skill gap: larger remainders are forgotten
      if rng.random() < 0.3 * (1 - quality):
        digits[-1] += rem
      else:
        digits[0] += rem
    if n >= 3 and 1 <= q <= 8 and rng.random() < 0.5 * (1 - quality):
      digits[1], digits[2] = digits[1] - 1, digits[2] + 1  # same sum, out of order
    if rng.random() < 0.05 + 0.2 * (1 - quality):
      digits.append(q)
    return [d + ord("0") for d in digits] + ([EOS] if rng.random() < STOP_BASE + 0.1 * quality else [])
