"""Rubric datasets as the loop's data source: the rubric JSONL format, builds keyed by content,
chat-templated prompts, long prompts counted, and host graders over the same criteria."""
import json
import os
import re
import shutil

import ml_collections
import numpy as np
import pytest

from focal.data.records import RecordError
from focal.data.rubric_jsonl import parse_rubric_jsonl_file
from focal.data.rubric_source import RubricSource, build_dataset
from focal.graders.stage import HostGrader, RulesGrader
from focal.policy import byte_tokens

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
RUBRIC = os.path.join(DATA, "rubric_tiny.jsonl")


def data_block(tmp_path, source="rubric_jsonl", path=RUBRIC, **over):
  d = ml_collections.ConfigDict({
      "source": source, "path": path, "eval_path": path, "eval_fraction": 0.1,
      "max_eval_prompts": 0, "max_prompt_tokens": 1024, "long_prompts": "truncate",
      "max_criteria": 0, "cache_dir": str(tmp_path / "datasets"), "prompts_per_step": 2})
  d.update(over)
  return d


def chat_bytes(messages):
  """A byte-level 'chat template' that accepts any conversation (the real byte one accepts one
  user turn): every turn's content, BOS first."""
  return [257] + list("\n".join(m["content"] for m in messages).encode())


def source_of(tmp_path, **over):
  tokens = byte_tokens()
  return RubricSource(data_block(tmp_path, **over), chat_bytes, tokens.decode_response,
                      pad_id=tokens.pad_id, eos_id=tokens.eos_id, seed=0)


def test_rubric_jsonl_reads_strings_and_turns_names_and_rules():
  examples = parse_rubric_jsonl_file(RUBRIC)
  assert [ex["source"] for ex in examples] == ["q1", "q2", "q3", "q4"]
  assert json.loads(examples[0]["messages"]) == [{"role": "user",
                                                  "content": "Name a primary colour."}]
  assert [m["role"] for m in json.loads(examples[1]["messages"])] == ["system", "user"]
  pitfall = examples[0]["criteria"][2]
  assert pitfall["weight"] == -3 and pitfall["category_name"] == "safety"
  assert json.loads(pitfall["rule"]) == {"flags": "i", "regex": "\\bdamn\\b"}


@pytest.mark.parametrize("record, field", [
    ({"prompt": "q", "criteria": [{"text": "t", "weight": 1, "category": "a",
                                   "rule": {"regex": "("}}]}, "criteria[0].rule"),
    ({"prompt": "q", "criteria": [{"text": "t", "weight": 1, "category": "a",
                                   "rule": {"contains": "x", "mode": "most"}}]}, "criteria[0].rule"),
    ({"prompt": [{"role": "robot", "content": "hi"}], "criteria": [
        {"text": "t", "weight": 1, "category": "a"}]}, "prompt[0].role"),
    ({"prompt": "q", "criteria": [{"text": "t", "weight": "5", "category": "a"}]},
     "criteria[0].weight"),
    ({"prompt": "q", "criteria": [{"text": "t", "weight": 1, "category": "a",
                                   "required": "no"}]}, "criteria[0].required"),
    ({"prompt": "", "criteria": [{"text": "t", "weight": 1, "category": "a"}]}, "prompt"),
])
def test_a_bad_record_names_file_line_and_field(tmp_path, record, field):
  path = tmp_path / "bad.jsonl"
  path.write_text(json.dumps({"prompt": "fine", "criteria": [
      {"text": "t", "weight": 1, "category": "a"}]}) + "\n" + json.dumps(record) + "\n")
  with pytest.raises(RecordError, match=rf"bad\.jsonl:2: field '{re.escape(field)}'"):
    parse_rubric_jsonl_file(str(path))


def test_a_file_of_another_source_names_its_config_field(tmp_path):
  # configs/judge_demo.py's RaR eval file outliving --config.data.source=rubric_jsonl: the error
  # says which field holds the file, and nothing is left built.
  rar = os.path.join(DATA, "rar_tiny.jsonl")
  cache = tmp_path / "datasets"
  with pytest.raises(RecordError, match=r"^data\.eval_path=.*rar_tiny\.jsonl read as "
                     r"data\.source=rubric_jsonl: .*rar_tiny\.jsonl:1: field 'prompt'.*"
                     r"--config\.data\.eval_path=''"):
    build_dataset("rubric_jsonl", RUBRIC, rar, str(cache))
  with pytest.raises(RecordError, match=r"^data\.path=.*rar_tiny\.jsonl read as "
                     r"data\.source=rubric_jsonl: "):
    build_dataset("rubric_jsonl", rar, RUBRIC, str(cache))
  assert not cache.exists() or not any(cache.iterdir())


def test_source_batches_are_a_pure_function_of_seed_and_step(tmp_path):
  source = source_of(tmp_path)
  assert source.categories == ("accuracy", "safety", "style")  # names in sorted order
  assert source.stats["data/train_prompts"] == 4 and source.stats["data/train_truncated"] == 0
  batch, idx = source.batch(3)
  again, idx2 = source_of(tmp_path).batch(3)
  np.testing.assert_array_equal(idx, idx2)
  np.testing.assert_array_equal(np.asarray(batch.tokens), np.asarray(again.tokens))
  # Left padding ends every prompt in the last column, BOS first.
  tokens, mask = source.train_prompts
  assert mask[:, -1].all()
  first = tokens[0][mask[0]]
  assert first[0] == 257 and bytes(first[1:].tolist()).decode() == "Name a primary colour."


def test_long_prompts_are_cut_or_skipped_and_counted(tmp_path):
  cut = source_of(tmp_path, max_prompt_tokens=12)
  assert cut.stats["data/train_truncated"] == 4 and cut.width == 12
  tokens, mask = cut.train_prompts
  # Cut from the left: the end of the prompt (the question) is kept.
  assert bytes(tokens[0][mask[0]].tolist()).decode().endswith("ry colour.")
  skipped = source_of(tmp_path, max_prompt_tokens=24, long_prompts="skip")
  assert skipped.stats["data/train_skipped"] == 2 and skipped.stats["data/train_prompts"] == 2


def test_a_changed_source_file_is_built_anew_never_served_stale(tmp_path):
  path = tmp_path / "data.jsonl"
  shutil.copy(RUBRIC, path)
  first = build_dataset("rubric_jsonl", str(path), cache_dir=str(tmp_path / "cache"))
  lines = path.read_text().splitlines()
  path.write_text("\n".join(lines[:2]) + "\n")
  second = build_dataset("rubric_jsonl", str(path), cache_dir=str(tmp_path / "cache"))
  assert first.data_dir != second.data_dir
  assert len(second.as_data_source("train")) == 2
  path.write_text("{not json\n")
  with pytest.raises(RecordError, match="data.jsonl:1"):
    build_dataset("rubric_jsonl", str(path), cache_dir=str(tmp_path / "cache"))


def test_rules_grade_the_data_criteria_in_their_original_sense(tmp_path):
  source = source_of(tmp_path)
  grader = HostGrader(source, RulesGrader())
  enc = lambda text: (np.asarray(list(text.encode()) + [258]), np.ones(len(text) + 1, bool))
  responses = ["Red, damn.", "blue"]  # to q1 (row 0): both name a colour; one swears
  pairs = [enc(r) for r in responses]
  width = max(len(t) for t, _ in pairs)
  tokens = np.stack([np.pad(t, (0, width - len(t)), constant_values=256) for t, _ in pairs])
  mask = np.stack([np.pad(m, (0, width - len(m))) for _, m in pairs])
  scores, valid, _ = grader.score("train", [0], tokens, mask, group=2)
  assert valid[0, :, :3].all() and not valid[0, :, 3:].any()
  np.testing.assert_array_equal(scores[0, :, :3], [[1, 1, 1], [1, 1, 0]])


def test_normalize_example_reads_tfds_records_and_plain_dicts_alike():
  from focal.data.rubric_source import normalize_example
  plain = {"prompt_id": 3, "prompt": "Q?", "criteria": [
      {"text": "a", "weight": 5, "category": 1, "required": True, "rule": "{}"},
      {"text": "b", "weight": -2, "category": 0, "required": False}]}
  # What as_data_source yields: bytes, numpy scalars, criteria as a dict of lists.
  decoded = {"prompt_id": np.int64(3), "prompt": b"Q?", "messages": b"", "reference": b"",
             "criteria": {"text": [b"a", b"b"], "weight": np.float32([5, -2]),
                          "category": np.int32([1, 0]), "required": np.array([True, False]),
                          "title": [b"", b""], "category_name": [b"", b""],
                          "rule": [b"{}", b""]}}
  want = {"prompt_id": 3, "prompt": "Q?", "messages": [{"role": "user", "content": "Q?"}],
          "reference": "",
          "criteria": [{"text": "a", "weight": 5.0, "category": 1, "required": True,
                        "title": "", "category_name": "", "rule": "{}"},
                       {"text": "b", "weight": -2.0, "category": 0, "required": False,
                        "title": "", "category_name": "", "rule": ""}]}
  assert normalize_example(plain) == want
  assert normalize_example(decoded) == want


def test_a_criterion_of_weight_zero_is_dropped_said_and_counted(tmp_path):
  # Weight 0 adds nothing to a weighted reward, yet strict required it and a judge was paid
  # to grade it. It is dropped, with a warning and a count in step 0's row.
  records = [json.loads(line) for line in open(RUBRIC)]
  records[0]["criteria"].append({"text": "Mentions the weather.", "weight": 0,
                                 "category": "style", "rule": {"contains": ["weather"]}})
  path = tmp_path / "zero.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  with pytest.warns(UserWarning, match=rf"{path}: dropped 1 train criteria of weight 0"):
    source = source_of(tmp_path, path=str(path), eval_path=str(path))
  assert source.stats["data/train_dropped_criteria"] == 1
  assert source.stats["data/eval_dropped_criteria"] == 1
  texts = [c["text"] for ex in source.train_examples for c in ex["criteria"]]
  assert "Mentions the weather." not in texts and len(texts) == sum(
      len(r["criteria"]) for r in records) - 1
  weights = np.asarray(source.train_rubric.weights)[np.asarray(source.train_rubric.mask)]
  assert (weights != 0).all()
