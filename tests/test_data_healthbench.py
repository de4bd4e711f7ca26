import json
import math

import numpy as np
import pytest

from conftest import tree
from focal.data import Healthbench, RecordError, build
from focal.data.healthbench import AXES, AXIS_IDS, parse_healthbench_file, score_records, to_arrays
from focal.data.records import read_jsonl


def _records(path):
  return [rec for _, rec in read_jsonl(path)]


def test_axis_table_is_fixed():
  assert AXES == ("accuracy", "completeness", "communication_quality", "context_awareness",
                  "instruction_following")
  assert AXIS_IDS["accuracy"] == 0 and AXIS_IDS["instruction_following"] == 4


def test_mapping_on_fixture(healthbench_path):
  examples = parse_healthbench_file(healthbench_path)
  assert len(examples) == 5
  first = examples[0]
  assert first["source"] == "hb-0001"
  assert first["prompt"] == "user: I have had a mild headache for two days. What can I do?"
  assert [c["weight"] for c in first["criteria"]] == [5, 3, 7, -4]
  assert [c["category"] for c in first["criteria"]] == [1, 0, 1, 0]
  assert not any(c["required"] for c in first["criteria"])
  second = examples[1]
  assert second["prompt"].split("\n\n")[0] == "system: You are a careful assistant."
  assert second["prompt"].endswith("user: Lisinopril.")
  assert second["reference"].startswith("Ibuprofen can raise")
  assert first["reference"] == ""


def test_build_and_read_back(tmp_path, healthbench_path):
  data_dir = str(tmp_path / "tfds")
  builder = build(Healthbench(data_dir=data_dir, source_files={"test": healthbench_path}))
  source = builder.as_data_source("test")
  assert len(source) == 5
  ex = source[3]
  assert ex["source"].decode() == "hb-0004" and ex["prompt_id"] == 3
  assert list(ex["criteria"]["weight"]) == [10.0, 5.0, -8.0]
  assert list(ex["criteria"]["category"]) == [AXIS_IDS["completeness"], AXIS_IDS["accuracy"],
                                              AXIS_IDS["context_awareness"]]


GOOD = {"prompt": [{"role": "user", "content": "hi"}], "prompt_id": "p1",
        "rubrics": [{"criterion": "greets", "points": 3, "tags": ["level:example", "axis:accuracy"]}],
        "example_tags": ["theme:x"]}


def _with(path_value):
  rec = json.loads(json.dumps(GOOD))
  keys, value = path_value
  target = rec
  for k in keys[:-1]:
    target = target[k]
  if value is None:
    del target[keys[-1]]
  else:
    target[keys[-1]] = value
  return json.dumps(rec)


BAD = {
    "truncated": (json.dumps(GOOD)[:25], None, "malformed JSON"),
    "not_an_object": ("[1, 2]", None, "expected a JSON object"),
    "missing_prompt_id": (_with((["prompt_id"], None)), "prompt_id", "missing"),
    "prompt_id_int": (_with((["prompt_id"], 7)), "prompt_id", "expected str"),
    "prompt_not_list": (_with((["prompt"], "hi")), "prompt", "expected list"),
    "message_no_content": (_with((["prompt", 0, "content"], None)), "prompt[0].content", "missing"),
    "no_rubrics": (_with((["rubrics"], [])), "rubrics", "no rubric criteria"),
    "points_string": (_with((["rubrics", 0, "points"], "3")), "rubrics[0].points", "expected int"),
    "points_nan": (_with((["rubrics", 0, "points"], math.nan)), "rubrics[0].points", "finite"),
    "points_zero": (_with((["rubrics", 0, "points"], 0)), "rubrics", "every criterion weight is zero"),
    "unknown_axis": (_with((["rubrics", 0, "tags"], ["axis:bedside_manner"])), "rubrics[0].tags",
                     "unknown axis 'bedside_manner'"),
    "missing_axis": (_with((["rubrics", 0, "tags"], ["level:example"])), "rubrics[0].tags",
                     "exactly one 'axis:' tag"),
    "tag_not_str": (_with((["rubrics", 0, "tags"], ["axis:accuracy", 3])), "rubrics[0].tags[1]",
                    "expected str"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_record_names_file_line_field(tmp_path, name):
  line, field, message = BAD[name]
  path = tmp_path / "bad.jsonl"
  path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
  with pytest.raises(ValueError, match=message) as info:
    parse_healthbench_file(str(path))
  assert isinstance(info.value, RecordError)
  assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)


def test_failed_build_leaves_nothing(tmp_path):
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps(GOOD) + "\n" + BAD["unknown_axis"][0] + "\n")
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  (data_dir / "keep.txt").write_text("unrelated")
  with pytest.raises(RecordError, match="unknown axis"):
    build(Healthbench(data_dir=str(data_dir), config="hard", source_files={"train": str(bad)}))
  assert tree(data_dir) == {"keep.txt"}


# Verdicts for the five fixture records, and the official scores worked out by hand:
#   hb-0001 points [5, 3, 7, -4] met [T, F, T, T]: (5 + 7 - 4) / 15        = 8/15
#   hb-0002 points [8, 4, 2, -6] met [T, T, T, F]: 14 / 14                 = 1
#   hb-0003 points [5, 3]        met [F, F]      : 0 / 8                   = 0
#   hb-0004 points [10, 5, -8]   met [F, F, T]   : -8 / 15  (not clipped)  = -8/15
#   hb-0005 points [6, 2, -2]    met [T, T, T]   : 6 / 8                   = 3/4
VERDICTS = [[True, False, True, True], [True, True, True, False], [False, False],
            [False, False, True], [True, True, True]]


def test_official_score_by_hand(healthbench_path):
  result = score_records(_records(healthbench_path), VERDICTS)
  assert result["per_example"] == pytest.approx([8 / 15, 1.0, 0.0, -8 / 15, 0.75])
  assert result["overall_score"] == pytest.approx((8 / 15 + 1 + 0 - 8 / 15 + 0.75) / 5)  # 0.35
  assert result["n_samples"] == 5
  tags, counts = result["tags"], result["tag_counts"]
  # accuracy items: hb-0001 [3, -4] met [F, T] -> -4/3; hb-0002 [8, -6] -> 1; hb-0003 [5] -> 0;
  # hb-0004 [5] -> 0; hb-0005 [6] -> 1.
  assert tags["axis:accuracy"] == pytest.approx((-4 / 3 + 1 + 0 + 0 + 1) / 5)
  assert tags["axis:completeness"] == pytest.approx((1.0 + 0.0) / 2)
  # hb-0004's only context item has negative points: skipped, so one example counts.
  assert tags["axis:context_awareness"] == pytest.approx(1.0)
  assert counts["axis:context_awareness"] == 1
  assert tags["axis:communication_quality"] == pytest.approx((1.0 + 0.0) / 2)
  assert tags["axis:instruction_following"] == 0.0
  # level:example items of hb-0004 are [5, -8] met [F, T] -> -8/5.
  assert tags["level:example"] == pytest.approx((8 / 15 + 1 + 0 - 1.6 + 0.75) / 5)
  assert tags["level:cluster"] == 0.0 and tags["cluster:emergency_referrals"] == 0.0
  # Example-level tags take the example's score; each mean is clipped to [0, 1].
  assert tags["theme:communication"] == pytest.approx((0 + 0.75) / 2)
  assert tags["theme:emergency_referrals"] == 0.0
  assert tags["theme:global_health"] == pytest.approx(8 / 15)
  assert tags["physician_agreed_category:health-professional"] == pytest.approx(0.75)


def test_dataset_mean_is_clipped_not_examples(healthbench_path):
  records = _records(healthbench_path)
  # Meet only the negative items: every example scores below zero.
  worst = [[r["points"] < 0 for r in rec["rubrics"]] for rec in records]
  result = score_records(records, worst)
  assert min(result["per_example"]) < 0
  assert result["overall_score"] == 0.0


def test_verdicts_read_from_graded_records(healthbench_path):
  records = _records(healthbench_path)
  for rec, met in zip(records, VERDICTS):
    for item, m in zip(rec["rubrics"], met):
      item["criteria_met"] = m
  assert score_records(records)["overall_score"] == pytest.approx(0.35)
  records[2]["rubrics"][1]["criteria_met"] = None
  with pytest.raises(ValueError, match=r"record 2: field 'rubrics\[1\].criteria_met'"):
    score_records(records)


def test_arrays_match_official_score(healthbench_path):
  records = _records(healthbench_path)
  scores, valid, rubric = to_arrays(records, VERDICTS, max_criteria=6)
  assert scores.shape == valid.shape == (5, 1, 6) and scores.dtype == np.float32
  w = np.asarray(rubric.weights)
  mask = np.asarray(rubric.mask)
  assert (valid[:, 0] == mask).all()
  per_example = (w * scores[:, 0]).sum(-1) / np.where(w > 0, w, 0).sum(-1)
  official = score_records(records, VERDICTS)
  np.testing.assert_allclose(per_example, official["per_example"], rtol=1e-6)
  assert np.asarray(rubric.categories)[3, :3].tolist() == [1, 0, 3]


def test_arrays_mark_missing_verdicts_invalid(healthbench_path):
  records = _records(healthbench_path)
  verdicts = [list(v) for v in VERDICTS]
  verdicts[0][1] = None
  scores, valid, _ = to_arrays(records, verdicts)
  assert not valid[0, 0, 1] and scores[0, 0, 1] == 0.0
  assert valid[0, 0, 0] and valid.sum() == sum(len(v) for v in VERDICTS) - 1


def test_duplicate_prompt_id_names_both_lines(tmp_path):
  other = json.loads(_with((["prompt_id"], "p2")))
  path = tmp_path / "dup.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in (GOOD, other, GOOD)) + "\n")
  with pytest.raises(RecordError, match="duplicate value 'p1', first seen on line 1") as info:
    parse_healthbench_file(str(path))
  assert (info.value.line, info.value.field) == (3, "prompt_id")
  with pytest.raises(RecordError, match="duplicate value 'p1'"):
    build(Healthbench(data_dir=str(tmp_path / "tfds"), source_files={"test": str(path)}))
  assert not (tmp_path / "tfds").exists()
