import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from focal.rubric import (RubricBatch, apply_pitfalls, min_valid_count, passes, same_category,
                          strict_targets)


def _crit(weight, category=0, required=False):
  return {"weight": weight, "category": category, "required": required}


def test_from_lists_pads_and_masks():
  r = RubricBatch.from_lists([[_crit(5, 0, True), _crit(-2, 1)], [_crit(1, 2)]],
                             prompt_ids=[7, 9], max_criteria=3)
  np.testing.assert_array_equal(r.weights, [[5, -2, 0], [1, 0, 0]])
  np.testing.assert_array_equal(r.categories, [[0, 1, 0], [2, 0, 0]])
  np.testing.assert_array_equal(r.required, [[True, False, False], [False, False, False]])
  np.testing.assert_array_equal(r.mask, [[True, True, False], [True, False, False]])
  np.testing.assert_array_equal(r.prompt_ids, [7, 9])
  assert r.weights.dtype == jnp.float32 and r.categories.dtype == jnp.int32


def test_rubric_is_a_pytree_through_jit():
  r = RubricBatch.from_lists([[_crit(1), _crit(2, 1)]])
  out = jax.jit(lambda rb: rb.weights.sum() + rb.categories.sum())(r)
  assert float(out) == 4.0
  leaves = jax.tree.leaves(r)
  assert len(leaves) == 5


@pytest.mark.parametrize("rubrics, kwargs, message", [
    ([[]], {}, "no rubric has any criterion"),
    ([[_crit(1)], []], {}, "prompt 1 (row 1): no real criteria"),
    ([[_crit(float("nan"))]], {}, "non-finite"),
    ([[_crit(float("inf"))]], {}, "non-finite"),
    ([[_crit(1, -1)]], {}, "field 'category' is -1, outside the valid range"),
    # Type slips that used to pass silently.
    ([[_crit("5")]], {}, "field 'weight' must be a number, got '5'"),
    ([[_crit(True)]], {}, "field 'weight' must be a number, got True"),
    ([[_crit(1, required="no")]], {}, "field 'required' must be a bool, got 'no'"),
    ([[_crit(1, required=1)]], {}, "field 'required' must be a bool, got 1"),
    ([[_crit(1, True)]], {}, "field 'category' must be an int, got True"),
    ([[_crit(1, 10**12)]], {}, "field 'category' is 1000000000000, outside the valid range"),
    ([[_crit(1)], [_crit(2)]], {"prompt_ids": [4, 4]}, "duplicates [4]"),
    ([[_crit(1)]], {"prompt_ids": [2**31]}, "field 'prompt_ids' is 2147483648, outside"),
    ([[_crit(0), _crit(0)]], {}, "no positive weight"),
    ([[_crit(-1)]], {"pitfall_mode": "signed"}, "no positive weight"),
    ([[_crit(1), _crit(1)]], {"max_criteria": 1}, "do not fit max_criteria=1"),
    ([[_crit(1)]], {"prompt_ids": [1, 2]}, "1 rubrics but 2 prompt_ids"),
    ([[{"category": 0}]], {}, "missing field 'weight'"),
    ([[{"weight": "heavy"}]], {}, "field 'weight' must be a number"),
    ([[_crit(1, 1.5)]], {}, "field 'category' must be an int"),
    ([[_crit(1)]], {"pitfall_mode": "clip"}, "pitfall_mode must be one of"),
])
def test_from_lists_rejects_bad_input(rubrics, kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    RubricBatch.from_lists(rubrics, **kwargs)


def test_category_ids_keep_their_value_up_to_the_int32_limit():
  r = RubricBatch.from_lists([[_crit(1, 2**31 - 1)]])
  assert int(r.categories[0, 0]) == 2**31 - 1


def test_duplicate_prompt_ids_only_by_explicit_option():
  r = RubricBatch.from_lists([[_crit(1)], [_crit(2)]], prompt_ids=[4, 4], allow_duplicate_ids=True)
  np.testing.assert_array_equal(r.prompt_ids, [4, 4])


@pytest.mark.parametrize("field, value, message", [
    ("weights", [["5", "1"]], "weights must be numbers (not bools or strings), got dtype <U1"),
    ("weights", [[True, True]], "weights must be numbers (not bools or strings), got dtype bool"),
    ("required", [["no", "no"]], "required must be bools, got dtype <U2"),
    ("required", [[0, 1]], "required must be bools, got dtype int64"),
    ("mask", [[1, 1]], "mask must be bools, got dtype int64"),
    ("categories", [[0, 10**12]], "categories must lie in [0, 2147483647] (stored as int32), "
                                  "got [1000000000000]"),
    ("prompt_ids", [-3], "prompt_ids must lie in [0, 2147483647]"),
    ("prompt_ids", [2**40], "prompt_ids must lie in [0, 2147483647]"),
])
def test_from_arrays_rejects_type_slips(field, value, message):
  fields = dict(weights=[[1.0, 2.0]], categories=[[0, 1]], required=[[True, False]],
                mask=[[True, True]], prompt_ids=[0])
  fields[field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    RubricBatch.from_arrays(**fields)


def test_from_arrays_rejects_duplicate_prompt_ids():
  two = dict(weights=np.ones((2, 1)), categories=np.zeros((2, 1), int),
             required=np.zeros((2, 1), bool), mask=np.ones((2, 1), bool))
  with pytest.raises(ValueError, match=re.escape("duplicates [5]")):
    RubricBatch.from_arrays(**two, prompt_ids=[5, 5])
  assert RubricBatch.from_arrays(**two, prompt_ids=[5, 5], allow_duplicate_ids=True).num_prompts == 2


def test_pitfall_only_rubric_is_fine_when_flipped():
  r = RubricBatch.from_lists([[_crit(-1)]])
  assert float(r.weights[0, 0]) == -1.0


def test_from_arrays_rejects_shape_mismatch():
  w = np.ones((2, 3))
  with pytest.raises(ValueError, match="categories has shape"):
    RubricBatch.from_arrays(w, np.zeros((2, 2), int), np.zeros((2, 3), bool), np.ones((2, 3), bool), [0, 1])
  with pytest.raises(ValueError, match="prompt_ids has shape"):
    RubricBatch.from_arrays(w, np.zeros((2, 3), int), np.zeros((2, 3), bool), np.ones((2, 3), bool), [0])
  with pytest.raises(ValueError, match="weights must be"):
    RubricBatch.from_arrays(np.ones(3), np.zeros(3, int), np.zeros(3, bool), np.ones(3, bool), [0])


def test_from_arrays_zeroes_padding():
  r = RubricBatch.from_arrays([[1.0, 9.0]], [[1, 5]], [[True, True]], [[True, False]], [3])
  np.testing.assert_array_equal(r.weights, [[1.0, 0.0]])
  np.testing.assert_array_equal(r.categories, [[1, 0]])
  np.testing.assert_array_equal(r.required, [[True, False]])


def test_apply_pitfalls_flip_and_signed():
  r = RubricBatch.from_lists([[_crit(3), _crit(-2)]])
  s = jnp.array([[[1.0, 1.0], [0.0, 0.25]]])
  w, sf = apply_pitfalls(s, r, "flip")
  np.testing.assert_allclose(w, [[3, 2]])
  np.testing.assert_allclose(sf, [[[1, 0], [0, 0.75]]])
  w, ss = apply_pitfalls(s, r, "signed")
  np.testing.assert_allclose(w, [[3, -2]])
  np.testing.assert_allclose(ss, s)


def test_passes_and_strict_targets():
  r = RubricBatch.from_lists([[_crit(3, required=True), _crit(-2, required=True), _crit(1)],
                              [_crit(1), _crit(1)]], max_criteria=3)
  s = jnp.array([[[1, 0, 0]], [[0.6, 0.4, 0]]], jnp.float32)
  np.testing.assert_array_equal(passes(s, r), [[[True, True, False]], [[True, False, False]]])
  # The second prompt flags nothing as required, so all its criteria are.
  np.testing.assert_array_equal(strict_targets(r), [[True, True, False], [True, True, False]])


def test_a_verdict_exactly_on_the_threshold_passes():
  # PASS_THRESHOLD = 0.5 is a pass (>=): a criterion at 0.5 is met, a pitfall at 0.5 is hit.
  r = RubricBatch.from_lists([[_crit(1), _crit(-1)]])
  s = jnp.float32([[[0.5, 0.5], [0.4999, 0.4999]]])
  np.testing.assert_array_equal(passes(s, r), [[[True, False], [False, True]]])


def test_min_valid_count_is_the_ceiling_despite_float_rounding():
  # POW3R: ceil(0.75 G). 0.7 * 10 = 7.000000000000001 in floats: still 7, not 8.
  assert [min_valid_count(g, 0.75) for g in (1, 4, 5, 16)] == [1, 3, 4, 12]
  assert min_valid_count(10, 0.7) == 7 and min_valid_count(3, 1.0) == 3


def test_apply_pitfalls_leaves_padding_at_weight_zero():
  r = RubricBatch.from_lists([[_crit(2), _crit(-1)]], max_criteria=3)
  s = jnp.float32([[[1, 1, 0.25]]])
  for mode, weights, scores in (("flip", [[2, 1, 0]], [[[1, 0, 0.25]]]),
                                ("signed", [[2, -1, 0]], [[[1, 1, 0.25]]])):
    w, s_out = apply_pitfalls(s, r, mode)
    np.testing.assert_array_equal(w, weights)
    np.testing.assert_allclose(s_out, scores)


def test_same_category_ignores_padding():
  r = RubricBatch.from_lists([[_crit(1, 0), _crit(1, 1), _crit(1, 0)]], max_criteria=4)
  np.testing.assert_array_equal(same_category(r)[0], [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
