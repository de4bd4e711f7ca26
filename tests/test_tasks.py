"""Synthetic rubric tasks: criteria on hand-written responses, prompts, grading, diagnostics."""
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import focal.tasks as tasks
from focal.tasks import texts
from focal.tasks import EOS, PAD, encode, pad_responses
from focal.tasks.diagnostics import _pearson, task_diagnostics

o = ord

# (task, features, response text, emits EOS, {criterion: expected verdict}).
# Every criterion of every task appears at least once passing and once failing
# (checked by test_cases_cover_every_criterion).
KW = [o("d"), o("k"), o("m"), o("q"), 6, o("e")]
AR = [47, 38, 85]
RP = [o("k"), 3]
SO = [4, o("d"), o("b"), o("c"), o("a"), -1]
CA = [4, o("p"), o("l"), o("u"), o("m"), -1, -1]
DS = [14, 3, 7]
CASES = [
    ("keywords", KW, "dkmq", True, dict(has_first=1, in_order=1, has_all=1, brief=1,
                                        lowercase=1, stops=1, forbidden=0)),
    ("keywords", KW, "kd mq, e!!", False, dict(has_first=1, in_order=0, has_all=1, brief=0,
                                               lowercase=0, stops=0, forbidden=1)),
    ("keywords", KW, "D", True, dict(has_first=0, in_order=0, has_all=0, brief=1,
                                     lowercase=0, stops=1, forbidden=0)),
    ("keywords", KW, "", True, dict(has_first=0, brief=0, lowercase=0, stops=1)),
    ("keywords", KW[:5] + [-1], "dkmqe", True, dict(forbidden=0, has_all=1)),
    ("keywords", KW, "d m k", True, dict(in_order=0, has_all=0, lowercase=1)),
    ("arith", AR, "85", True, dict(correct=1, units=1, starts_num=1, brief=1, stops=1,
                                   operands=0, echo=0)),
    ("arith", AR, "75=47+38", False, dict(correct=0, units=1, starts_num=1, brief=0, stops=0,
                                          operands=1, echo=0)),
    ("arith", AR, "47+38=85", True, dict(correct=0, units=0, starts_num=1, brief=0, operands=1,
                                         echo=1)),
    ("arith", AR, " 85", True, dict(correct=0, units=0, starts_num=0, brief=1)),
    ("arith", AR, "85 47", True, dict(correct=1, operands=0, brief=0)),
    ("repeat", RP, "kkk", True, dict(nonempty=1, only_letter=1, stops=1, exact=1, near=1,
                                     other_case=0)),
    ("repeat", RP, "kkkk", False, dict(only_letter=1, stops=0, exact=0, near=1)),
    ("repeat", RP, "kK k", True, dict(nonempty=1, only_letter=0, exact=0, near=1,
                                      other_case=1)),
    ("repeat", RP, "", True, dict(nonempty=0, only_letter=0, exact=0, near=0, other_case=0)),
    ("repeat", [o("K"), 2], "kK", True, dict(other_case=1, exact=0, near=1)),
    ("sort", SO, "abcd", True, dict(first_min=1, sorted=1, all_present=1, no_extra=1,
                                    no_repeat=1, stops=1, copy=0)),
    ("sort", SO, "dbca", True, dict(first_min=0, sorted=0, all_present=1, no_extra=1,
                                    no_repeat=1, copy=1)),
    ("sort", SO, "a,b,c,d", False, dict(first_min=1, sorted=0, all_present=1, no_extra=0,
                                        no_repeat=0, stops=0)),
    ("sort", SO, "abc", True, dict(sorted=0, all_present=0, no_extra=1, copy=0)),
    ("sort", SO, "abcdd", True, dict(sorted=0, no_repeat=0, all_present=1)),
    ("caps", CA, "[PLUM]", True, dict(opens=1, closes=1, stops=1, all_upper=1, brief=1, word=1,
                                      digits=0)),
    ("caps", CA, "[PLUm (4)", False, dict(opens=1, closes=0, stops=0, all_upper=0, brief=0,
                                          word=1, digits=1)),
    ("caps", CA, "PLU]", True, dict(opens=0, closes=1, all_upper=1, brief=1, word=0)),
    ("caps", CA, "[]", True, dict(all_upper=0, word=0, closes=1)),
    ("caps", CA, "[PLUMS]", True, dict(word=0, all_upper=1, brief=0)),
    ("digitsum", DS, "653", True, dict(all_digits=1, right_len=1, sum=1, descending=1,
                                       distinct=1, stops=1, banned=0)),
    ("digitsum", DS, "5 7 2", False, dict(all_digits=0, right_len=0, sum=1, descending=0,
                                          distinct=0, stops=0, banned=1)),
    ("digitsum", DS, "3558", True, dict(right_len=0, sum=0, descending=0, distinct=0)),
    ("digitsum", DS, "", True, dict(all_digits=0, descending=0, distinct=0, sum=0)),
]


_JITTED = {}


def _grade_text(task, features, text, eos, length=24):
  grade = _JITTED.setdefault(task.name, jax.jit(task.grade))
  tokens, mask = pad_responses([encode(text, eos)], length)
  return np.asarray(grade(np.asarray([features], np.int32), tokens, mask))[0]


@pytest.mark.parametrize("name,features,text,eos,expected", CASES,
                         ids=[f"{c[0]}:{c[2]!r}" for c in CASES])
def test_criterion_on_hand_written_response(name, features, text, eos, expected):
  task = tasks.get(name)
  scores = _grade_text(task, features, text, eos)
  got = {k: float(scores[task.criterion_index(k)]) for k in expected}
  assert got == {k: float(v) for k, v in expected.items()}


def test_cases_cover_every_criterion():
  seen = {(n, c.name): set() for n in tasks.names() for c in tasks.get(n).criteria}
  for name, _, _, _, expected in CASES:
    for k, v in expected.items():
      seen[(name, k)].add(v)
  assert {key: vals for key, vals in seen.items() if vals != {0, 1}} == {}


def test_special_tokens_are_not_text():
  task = tasks.get("repeat")
  # A BOS inside the response, and tokens past the mask, never count.
  tokens = np.asarray([[o("k"), 257, o("k"), o("k"), EOS, o("k"), PAD]], np.int32)
  mask = np.asarray([[True, True, True, True, True, False, False]])
  scores = np.asarray(task.grade(np.asarray([RP], np.int32), tokens, mask))[0]
  assert scores[task.criterion_index("exact")] == 1.0
  assert scores[task.criterion_index("only_letter")] == 1.0


@pytest.mark.parametrize("name", tasks.names())
def test_task_declaration(name):
  task = tasks.get(name)
  crit = task.criteria
  assert len(crit) == task.num_criteria == len(task.checks)
  assert len({c.name for c in crit}) == len(crit)
  assert any(c.weight < 0 for c in crit), "every task has a pitfall"
  assert any(c.required for c in crit)
  sizes = [sum(c.category == cat for c in crit) for cat in task.categories]
  assert min(sizes) >= 1 and len(set(sizes)) > 1, "categories of unequal size"
  assert name in (task.__doc__ or "") and all(c.name in task.__doc__ for c in crit)


@pytest.mark.parametrize("name", tasks.names())
def test_prompts_deterministic_and_splits_disjoint(name):
  task = tasks.get(name)
  a = task.make_prompts("train", 48, seed=3)
  b = task.make_prompts("train", 48, seed=3)
  np.testing.assert_array_equal(a.features, b.features)
  np.testing.assert_array_equal(a.prompt_ids, b.prompt_ids)
  assert a.tokens == b.tokens
  assert not np.array_equal(task.make_prompts("train", 48, seed=4).features, a.features)
  train = task.make_prompts("train", 120, seed=0)
  evals = task.make_prompts("eval", 40, seed=0)
  keys = lambda ps: {r.tobytes() for r in ps.features}
  assert len(keys(train)) == 120 and len(keys(evals)) == 40
  assert not keys(train) & keys(evals)
  assert not {bytes(t) for t in train.tokens} & {bytes(t) for t in evals.tokens}
  assert not set(train.prompt_ids.tolist()) & set(evals.prompt_ids.tolist())
  np.testing.assert_array_equal(train.prompt_ids, np.arange(120))


@pytest.mark.parametrize("name", tasks.names())
def test_prompt_set_arrays(name):
  task = tasks.get(name)
  ps = task.make_prompts("train", 32, seed=0)
  n, k = 32, task.num_criteria
  assert ps.features.shape == (n, task.num_features) and ps.features.dtype == np.int32
  for arr in (ps.weights, ps.categories, ps.required, ps.mask):
    assert arr.shape == (n, k)
  assert all(0 <= t < 256 for toks in ps.tokens for t in toks)
  assert ps.categories.max() < len(task.categories)
  rubric = ps.rubric()
  assert rubric.weights.shape == (n, k)


def test_bad_names():
  with pytest.raises(ValueError, match="choices: keywords, arith"):
    tasks.get("nope")
  with pytest.raises(ValueError, match="split"):
    tasks.get("arith").make_prompts("test", 4, 0)
  assert len(tasks.names()) == 6


@pytest.mark.parametrize("name", tasks.names())
def test_grade_jit_matches_eager_on_references_and_noise(name):
  task = tasks.get(name)
  ps = task.make_prompts("train", 16, seed=1)
  ref, ref_mask = task.reference_responses(ps.features, rng=0)
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 260, size=ref.shape).astype(np.int32)
  noise_mask = np.arange(ref.shape[1])[None] < rng.integers(0, ref.shape[1] + 1, (16, 1))
  tokens = np.concatenate([ref, noise])
  mask = np.concatenate([ref_mask, noise_mask])
  features = np.concatenate([ps.features, ps.features])
  eager = np.asarray(task.grade(features, tokens, mask))
  grade = jax.jit(task.grade)
  jitted = np.asarray(grade(features, tokens, mask))
  assert eager.shape == (32, task.num_criteria) and eager.dtype == np.float32
  np.testing.assert_array_equal(eager, jitted)
  assert np.all((eager >= 0) & (eager <= 1))
  # Rows are graded independently of their neighbours.
  np.testing.assert_array_equal(np.asarray(grade(features[::-1], tokens[::-1], mask[::-1])),
                                eager[::-1])


@pytest.mark.parametrize("name", tasks.names())
def test_reference_responses_follow_token_contract(name):
  task = tasks.get(name)
  ps = task.make_prompts("train", 32, seed=0)
  tokens, mask = task.reference_responses(ps.features, rng=5)
  again, _ = task.reference_responses(ps.features, rng=5)
  np.testing.assert_array_equal(tokens, again)
  assert tokens.shape == (32, task.max_response_len) and tokens.dtype == np.int32
  lengths = mask.sum(1)
  np.testing.assert_array_equal(mask, np.arange(tokens.shape[1])[None] < lengths[:, None])
  assert np.all(tokens[~mask] == PAD) and np.all(tokens[mask] < 259)
  eos_rows, eos_pos = np.nonzero(tokens == EOS)
  np.testing.assert_array_equal(eos_pos, lengths[eos_rows] - 1)
  assert 0 < len(eos_rows) < 32 and lengths.max() <= 32


@pytest.fixture(scope="module")
def diagnostics():
  return {n: task_diagnostics(tasks.get(n), num_prompts=24, group_size=16, seed=0)
          for n in tasks.names()}


def test_reference_diagnostics_mix_saturated_dead_contrastive(diagnostics):
  for name, d in diagnostics.items():
    assert 0.1 <= d.saturated <= 0.45, (name, d.saturated)
    assert 0.08 <= d.dead <= 0.45, (name, d.dead)
    assert d.contrastive >= 0.3, (name, d.contrastive)
    # A heavy criterion (weight >= 3) that teaches nothing at the start.
    heavy_flat = (np.abs(d.weights) >= 3) & ((d.saturated_frac >= 0.9) | (d.dead_frac >= 0.25))
    assert heavy_flat.any(), name
  sat = np.mean([d.saturated for d in diagnostics.values()])
  dead = np.mean([d.dead for d in diagnostics.values()])
  assert 0.17 <= sat <= 0.33 and 0.17 <= dead <= 0.35, (sat, dead)


def test_reference_weights_do_not_track_variance(diagnostics):
  w = np.concatenate([np.abs(d.weights) for d in diagnostics.values()])
  v = np.concatenate([d.variance for d in diagnostics.values()])
  assert _pearson(w, v) < 0.2
  # weighted_sum puts a large share of its weight where there is no signal.
  assert np.mean([d.zero_signal_pressure for d in diagnostics.values()]) > 0.3


def test_suite_batch():
  suite = tasks.make_suite()
  # 32 rows per task reuse the eager kernels of the jit-vs-eager test (same shapes).
  per = 32
  ps = suite.make_prompts("train", per, seed=0)
  n, k = per * 6, suite.num_criteria
  assert ps.weights.shape == (n, k) and ps.features.shape == (n, suite.num_features)
  assert len(set(ps.prompt_ids.tolist())) == n
  ps.rubric()
  cats = [set(ps.categories[i * per:(i + 1) * per][ps.mask[i * per:(i + 1) * per]].tolist())
          for i in range(6)]
  for i in range(6):
    for j in range(i):
      assert not cats[i] & cats[j]
  assert len(suite.categories) == max(max(c) for c in cats) + 1
  tokens, mask = suite.reference_responses(ps.features, rng=0)
  scores = np.asarray(jax.jit(suite.grade)(ps.features, tokens, mask))
  for i, task in enumerate(suite.tasks):
    rows = slice(i * per, (i + 1) * per)
    own = np.asarray(task.grade(ps.features[rows, 1:1 + task.num_features], tokens[rows],
                                mask[rows]))
    np.testing.assert_array_equal(scores[rows, :task.num_criteria], own)
    assert np.all(scores[rows, task.num_criteria:] == 0)
    assert not ps.mask[rows, task.num_criteria:].any()
  evals = suite.make_prompts("eval", 4, seed=0)
  assert evals.prompt_ids.min() >= tasks.EVAL_ID_OFFSET


# -- texts for a host-side judge: parse (inverse of render), criterion texts -----------------


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(tasks.names()), st.integers(0, 2**32 - 1))
def test_parse_inverts_render_on_sampled_features(name, seed):
  task = tasks.get(name)
  for row in np.asarray(task.sample_features(np.random.default_rng(seed), 16), np.int32):
    parsed = task.parse(task.render(row))
    assert parsed.dtype == np.int32 and parsed.tolist() == row.tolist()


def test_each_prompt_parses_only_as_its_own_task():
  suite = tasks.make_suite()
  prompts = suite.make_prompts("train", 3, seed=1)
  for text, row in zip(texts.prompt_texts(prompts), prompts.features):
    assert suite.parse(text).tolist() == row.tolist()
    own = suite.tasks[row[0]]
    for other in suite.tasks:
      if other is not own:
        with pytest.raises(ValueError, match=f"not a {other.name} prompt"):
          other.parse(text)
  with pytest.raises(ValueError, match="is not a prompt of suite"):
    suite.parse("kw:abc max:4")  # three keywords: no task's grammar


def test_criterion_texts_name_their_criterion():
  seen = set()
  for name in tasks.names():
    for c in tasks.get(name).criteria:
      text = texts.criterion_text(name, c)
      assert c.description and text.startswith(f"{name}/{c.name}: ")
      assert texts.find_criterion(text) == (name, c.name)
      assert texts.find_criterion("The response avoids the following: " + text) == (name, c.name)
      seen.add(text)
  assert len(seen) == sum(tasks.get(n).num_criteria for n in tasks.names())
  # The text is a contract with saved datasets and verdict caches: it must not drift.
  kw = tasks.get("keywords")
  assert texts.criterion_text("keywords", kw.criteria[0]) == (
      "keywords/has_first: the first keyword appears")
  with pytest.raises(ValueError, match="no '<task>/<criterion>: ' reference"):
    texts.find_criterion("the response is brief")


def test_judge_criteria_follow_the_prompt_set():
  suite = tasks.make_suite()
  prompts = suite.make_prompts("eval", 2, seed=0)
  lists = texts.judge_criteria(suite, prompts)
  assert len(lists) == len(prompts)
  for i, (row, crit) in enumerate(zip(prompts.features, lists)):
    task = suite.tasks[row[0]]
    assert len(crit) == task.num_criteria
    for k, c in enumerate(crit):
      assert texts.find_criterion(c["text"]) == (task.name, task.criteria[k].name)
      assert c["category"] in task.categories
      if prompts.mask[i, k]:
        assert c["weight"] == prompts.weights[i, k] and c["required"] == prompts.required[i, k]
  single = tasks.get("arith")
  assert len(texts.judge_criteria(single, single.make_prompts("train", 2, 0))) == 2
