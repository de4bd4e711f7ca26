"""`keywords`: write four prompt-given letters, in order, within a length limit.

Prompt: `kw:dkmq max:6 no:e` (four distinct lowercase keywords, a body length
limit N in 4..9, and, in 70% of prompts, a forbidden letter). A perfect answer
is `dkmq`. Features: [k1, k2, k3, k4, N, forbidden (-1 = none)].

Criteria (category, weight, required):
  has_first   content       5  req  the first keyword appears
  in_order    content       2       the keywords present appear in prompt order (>= 2 present)
  has_all     completeness  4  req  all four keywords appear
  brief       style         3       1 <= body length <= N
  lowercase   style         1       only lowercase letters and spaces
  stops       style         1       the response ends with EOS
  forbidden   safety       -3       the forbidden letter appears (pitfall; slot off without one)

Why it is hard: the reference always writes the first keyword (the heaviest
criterion is saturated) but drops the fourth whenever it comes before the third
in the alphabet (has_all: heavy, required, dead on those prompts), and it
alphabetizes the first two keywords (in_order dead where k2 < k1). It usually
separates keywords with spaces or commas (commas break `lowercase`), which
breaks `brief` on tight limits: brevity and completeness compete for the same
few tokens. It pads roomy answers (N >= 8 always, N >= 6 half the time) with
"done.", which kills `brief` and `lowercase` there, and prompt writers like to
forbid a letter of "done", which is then hit. The style category (3 criteria,
5 points) carries most of the contrast but little weight, so a weighted sum
lets it lag.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from focal.tasks import checks as C
from focal.tasks.base import EOS, STOP_BASE, Criterion, Task, match_prompt

SPACE, COMMA = ord(" "), ord(",")
FILLER = "done."


def has_first(f, r, m):
  return C.contains(r, m, f[0])


def in_order(f, r, m):
  idx = jnp.stack([C.first_index(r, m, f[i]) for i in range(4)])
  present = idx < r.shape[0]
  later = jnp.arange(4)[None, :] > jnp.arange(4)[:, None]
  pair = present[:, None] & present[None, :] & later
  ordered = jnp.all(~pair | (idx[:, None] < idx[None, :]))
  return ordered & (jnp.sum(present) >= 2)


def has_all(f, r, m):
  return jnp.all(jnp.stack([C.contains(r, m, f[i]) for i in range(4)]))


def brief(f, r, m):
  n = C.body_len(r, m)
  return (n >= 1) & (n <= f[4])


def lowercase(f, r, m):
  return C.all_body(r, m, C.is_lower(r) | (r == SPACE))


def stops(f, r, m):
  return C.stopped(r, m)


def forbidden(f, r, m):
  return (f[5] >= 0) & C.contains(r, m, f[5])


class Keywords(Task):
  __doc__ = __doc__
  name = "keywords"
  categories = ("content", "completeness", "style", "safety")
  rubric = (
      (Criterion("has_first", "content", 5.0, True, "the first keyword appears"), has_first),
      (Criterion("in_order", "content", 2.0, False,
                 "the keywords present appear in prompt order (at least two present)"), in_order),
      (Criterion("has_all", "completeness", 4.0, True, "all four keywords appear"), has_all),
      (Criterion("brief", "style", 3.0, False, "the body has between 1 and max characters"), brief),
      (Criterion("lowercase", "style", 1.0, False,
                 "only lowercase letters and spaces (at least one)"), lowercase),
      (Criterion("stops", "style", 1.0, False, "the response ends with EOS"), stops),
      (Criterion("forbidden", "safety", -3.0, False, "the forbidden letter appears"), forbidden),
  )
  num_features = 6

  def sample_features(self, rng, n):
    out = np.empty((n, 6), np.int32)
    for i in range(n):
      letters = rng.choice(26, size=5, replace=False) + ord("a")
      out[i, :4] = letters[:4]
      out[i, 4] = rng.integers(4, 10)
      tempting = [ord(c) for c in FILLER if ord(c) not in letters[:4]]
      # Prompt writers like to forbid the letters of the reference's filler word.
      if tempting and rng.random() < 0.4:
        letters[4] = rng.choice(tempting)
      out[i, 5] = letters[4] if rng.random() < 0.7 else -1
    return out

  def render(self, f):
    text = f"kw:{bytes(f[:4].tolist()).decode()} max:{f[4]}"
    return text + (f" no:{chr(f[5])}" if f[5] >= 0 else "")

  def parse(self, text):
    m = match_prompt(self.name, r"kw:([a-z]{4}) max:(\d+)(?: no:(\S))?", text)
    forbidden = ord(m.group(3)) if m.group(3) else -1
    return np.asarray([*m.group(1).encode(), int(m.group(2)), forbidden], np.int32)

  def slot_mask(self, features):
    mask = np.ones((features.shape[0], self.num_criteria), bool)
    mask[:, self.criterion_index("forbidden")] = features[:, 5] >= 0
    return mask

  def reference_one(self, f, rng, quality):
    words = [int(f[0]), int(f[1]), int(f[2])]
    # Skill gap: the fourth keyword is lost when it breaks alphabetical order.
    if f[3] > f[2] and rng.random() < 0.8:
      words.append(int(f[3]))
    # Habit: alphabetizes the first two keywords.
    if f[1] < f[0] or rng.random() < 0.3 * (1 - quality) + 0.05:
      words[0], words[1] = words[1], words[0]
    u = rng.random()
    if u < 0.2 + 0.4 * quality:
      sep = []
    elif u < 0.2 + 0.4 * quality + 0.3 * (1 - quality):
      sep = [COMMA]
    else:
      sep = [SPACE]
    body = list(words[:1])
    for w in words[1:]:
      body += sep + [w]
    if f[4] >= 8 or (f[4] >= 6 and rng.random() < 0.5):  # pads roomy answers
      body += [SPACE] + list(FILLER.encode())
    return body + ([EOS] if rng.random() < STOP_BASE + 0.1 * quality else [])
