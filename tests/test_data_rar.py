import json
import math
import os

import pytest
import tensorflow_datasets as tfds

from conftest import tree
from focal.data import Rar, RecordError, build
from focal.data.rar import ESSENTIAL, IMPORTANT, OPTIONAL, PITFALL, parse_rar_file


def test_mapping_rule_on_fixture(rar_path):
  examples = parse_rar_file(rar_path)
  assert len(examples) == 6
  first = examples[0]
  assert first["prompt"] == "Which vitamin deficiency causes scurvy?"
  assert first["reference"].startswith("Vitamin C")
  assert first["source"] == "invented_med"
  assert [c["category"] for c in first["criteria"]] == [ESSENTIAL, IMPORTANT, OPTIONAL, PITFALL]
  assert [c["weight"] for c in first["criteria"]] == [5, 3, 1, -2]
  assert [c["required"] for c in first["criteria"]] == [True, False, False, False]
  # The label moves into the category; the text keeps the criterion itself.
  assert first["criteria"][0]["text"] == "Identifies vitamin C as the deficient vitamin."
  # A pitfall the file gives a positive weight still becomes negative.
  assert examples[1]["criteria"][2]["category"] == PITFALL
  assert examples[1]["criteria"][2]["weight"] == -1


def test_build_and_read_back_without_tensorflow(tmp_path, rar_path):
  data_dir = str(tmp_path / "tfds")
  build(Rar(data_dir=data_dir, config="medicine", source_files={"train": rar_path}))
  source = Rar(data_dir=data_dir, config="medicine").as_data_source("train")
  assert len(source) == 6
  ex = source[1]
  assert ex["prompt_id"] == 1
  assert ex["prompt"].decode() .startswith("A patient on warfarin")
  assert list(ex["criteria"]["weight"]) == [5.0, 4.0, -1.0]
  assert list(ex["criteria"]["category"]) == [ESSENTIAL, IMPORTANT, PITFALL]
  assert list(ex["criteria"]["required"]) == [True, False, False]
  # Readable without the builder code too.
  again = tfds.builder_from_directory(os.path.join(data_dir, "rar", "medicine", str(Rar.VERSION)))
  assert again.as_data_source("train")[5]["prompt"].decode() == "Name the first-line drug for anaphylaxis."


def test_prompt_ids_unique_across_splits(tmp_path, rar_path):
  data_dir = str(tmp_path / "tfds")
  builder = build(Rar(data_dir=data_dir, source_files={"train": rar_path, "test": rar_path}))
  ids = [builder.as_data_source(s)[i]["prompt_id"] for s in ("train", "test") for i in range(6)]
  assert ids == list(range(12))


GOOD = {"question": "q?", "reference_answer": "a", "question_source": "s",
        "rubric": [{"title": "t", "description": "Essential Criteria: does x", "weight": 5},
                   {"title": "u", "description": "Pitfall Criteria: does y", "weight": -1}]}


def _with(**changes):
  rec = json.loads(json.dumps(GOOD))
  for key, value in changes.items():
    if key == "crit0":
      rec["rubric"][0].update(value)
    elif value is _DROP:
      del rec[key]
    else:
      rec[key] = value
  return json.dumps(rec)


_DROP = object()

BAD = {
    "truncated": (json.dumps(GOOD)[:-7], None, "malformed JSON"),
    "missing_question": (_with(question=_DROP), "question", "missing"),
    "wrong_type": (_with(question=3), "question", "expected str"),
    "weight_string": (_with(crit0={"weight": "5"}), "rubric[0].weight", "expected int or float"),
    "weight_bool": (_with(crit0={"weight": True}), "rubric[0].weight", "expected int or float"),
    "no_rubric": (_with(rubric=[]), "rubric", "no rubric criteria"),
    "missing_rubric": (_with(rubric=_DROP), "rubric", "missing"),
    "nan_weight": (_with(crit0={"weight": math.nan}), "rubric[0].weight", "finite"),
    "zero_weights": (_with(rubric=[{"title": "t", "description": "Optional Criteria: x", "weight": 0}]),
                     "rubric", "every criterion weight is zero"),
    "unknown_label": (_with(crit0={"description": "Critical Criteria: x"}),
                      "rubric[0].description", "unknown label"),
    "no_label": (_with(crit0={"description": "does x"}), "rubric[0].description", "unknown label"),
    "negative_essential": (_with(crit0={"weight": -5}), "rubric[0].weight", "only pitfalls"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_record_names_file_line_field(tmp_path, name):
  line, field, message = BAD[name]
  path = tmp_path / "bad.jsonl"
  # The bad record is on line 3, after a good record and a blank line.
  path.write_text(json.dumps(GOOD) + "\n\n" + line + "\n" + json.dumps(GOOD) + "\n")
  with pytest.raises(RecordError, match=message) as info:
    parse_rar_file(str(path))
  err = info.value
  assert isinstance(err, ValueError)
  assert (err.path, err.line, err.field) == (str(path), 3, field)
  assert f"{path}:3" in str(err)


@pytest.mark.parametrize("name", ["truncated", "unknown_label", "nan_weight"])
def test_failed_build_leaves_nothing(tmp_path, name):
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps(GOOD) + "\n" + BAD[name][0] + "\n")
  fresh = tmp_path / "fresh"
  with pytest.raises(RecordError):
    build(Rar(data_dir=str(fresh), source_files={"train": str(bad)}))
  assert not fresh.exists()
  # A data_dir already holding another dataset keeps exactly what it had.
  shared = tmp_path / "shared"
  good = tmp_path / "good.jsonl"
  good.write_text(json.dumps(GOOD) + "\n")
  build(Rar(data_dir=str(shared), config="science", source_files={"train": str(good)}))
  before = tree(shared)
  with pytest.raises(RecordError):
    build(Rar(data_dir=str(shared), config="medicine", source_files={"train": str(bad)}))
  assert tree(shared) == before


def test_empty_file_is_an_error(tmp_path):
  empty = tmp_path / "empty.jsonl"
  empty.write_text("\n")
  with pytest.raises(RecordError, match="no records"):
    build(Rar(data_dir=str(tmp_path / "out"), source_files={"train": str(empty)}))
  assert not (tmp_path / "out").exists()


def test_non_utf8_input_names_file_and_line(tmp_path):
  path = tmp_path / "latin1.jsonl"
  bad = json.dumps(_json_with_question("caf\u00e9?"), ensure_ascii=False).encode("latin-1")
  path.write_bytes(json.dumps(GOOD).encode() + b"\n" + bad + b"\n")
  column = bad.index(b"\xe9") + 1
  with pytest.raises(RecordError, match=f"not valid UTF-8 \\(byte 0xe9 at column {column}\\)") \
      as info:
    parse_rar_file(str(path))
  assert (info.value.path, info.value.line) == (str(path), 2)
  assert f"{path}:2" in str(info.value)
  # The same text as UTF-8 reads fine.
  path.write_bytes(json.dumps(GOOD).encode() + b"\n" + bad.decode("latin-1").encode() + b"\n")
  assert parse_rar_file(str(path))[1]["prompt"] == "caf\u00e9?"


def _json_with_question(question):
  rec = json.loads(json.dumps(GOOD))
  rec["question"] = question
  return rec
