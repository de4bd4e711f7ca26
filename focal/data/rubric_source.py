"""A rubric dataset (RaR, HealthBench, or the project's rubric JSONL) as the loop's data source.

The source file is built once into a TFDS array_record dataset under
`data.cache_dir/<source>-<content hash>`, so a changed or different file never reuses an older
build; `data.path` may also name an already built TFDS directory. Every prompt is rendered
with the checkpoint's chat template and tokenized once at start-up (rubric datasets are small),
then batches are rows of those arrays chosen by `batch_indices(step, ...)`: a pure function
of (seed, step), so a resumed run sees exactly the batches an uninterrupted one would.

Prompts longer than `data.max_prompt_tokens` are cut from the left (`long_prompts=truncate`,
keeping their end, where the question is) or dropped (`skip`); both are counted in `stats`
and logged with the step-0 row, never silent. Held-out prompts come from `data.eval_path`, or
else a `data.eval_fraction` of the file chosen by a hash of each prompt's text (stable across
seeds and file order).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
import zlib
from typing import Any, Mapping

import numpy as np

from focal.data import sources
from focal.data.records import RecordError, user_turn
from focal.data.synthetic_source import batch_indices, host_copy, make_batch
from focal.rubric import RubricBatch
from focal.sampling import left_pad

LONG_PROMPTS = ("truncate", "skip")


def _builder_class(source: str):
  module, _, name = sources.get(source).builder.partition(":")
  return getattr(importlib.import_module(module), name)


def content_hash(paths) -> str:
  h = hashlib.sha256()
  for path in paths:
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    h.update(b"\0")
  return h.hexdigest()[:16]


def build_dataset(source: str, path: str, eval_path: str = "", cache_dir: str = ""):
  """The built TFDS builder of `path` (and `eval_path`), built now if not cached yet."""
  from focal.data.rubric_prompts import build
  import tensorflow_datasets as tfds
  if os.path.isdir(path):  # an already built TFDS dataset
    return tfds.builder_from_directory(path)
  files = {"train": path, **({"eval": eval_path} if eval_path else {})}
  for split, f in files.items():
    if not os.path.isfile(f):
      raise FileNotFoundError(f"data.{'path' if split == 'train' else 'eval_path'}: no file {f}")
  cls = _builder_class(source)
  key = f"{source}-{cls.VERSION}-{content_hash(files.values())}"
  root = os.path.join(os.path.expanduser(cache_dir or "~/.cache/focal/datasets"), key)
  builder = cls(source_files=files, data_dir=root)
  if not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    try:
      build(builder)
    except RecordError as e:
      raise _naming_the_field(e, source, files) from None
  return builder


def _naming_the_field(error: RecordError, source: str, files: dict) -> RecordError:
  """`error` led by the config field whose file it is: a preset's file (say a RaR eval file)
  outlives a change of data.source on the command line, and only the field says where to look."""
  if error.path == files.get("eval"):
    field, fix = "data.eval_path", ("give a held-out file in that format, or "
                                    "--config.data.eval_path='' to hold out data.eval_fraction "
                                    "of data.path")
  else:
    field, fix = "data.path", "give a file in that format"
  error.args = (f"{field}={error.path} read as data.source={source}: {error.args[0]} ({fix})",)
  return error


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


_OPTIONAL = ("title", "category_name", "rule")


def normalize_example(record: Mapping[str, Any]) -> dict[str, Any]:
  """A TFDS-decoded example (bytes, criteria as a dict of lists) or a plain dict (criteria
  as a list of dicts) -> plain Python types with criteria as a list of dicts. Fields an
  older or hand-written record lacks get their defaults (messages: one user turn)."""
  criteria = record["criteria"]
  if isinstance(criteria, Mapping):
    n = len(criteria["weight"])
    criteria = [{k: criteria[k][j] for k in criteria} for j in range(n)]
  prompt = _text(record["prompt"])
  messages = _text(record.get("messages", "")) or user_turn(prompt)
  return {
      "prompt_id": int(record["prompt_id"]),
      "prompt": prompt,
      "messages": json.loads(messages),
      "reference": _text(record.get("reference", "")),
      "criteria": [{"text": _text(c["text"]), "weight": float(c["weight"]),
                    "category": int(c["category"]), "required": bool(c["required"]),
                    **{k: _text(c.get(k, "")) for k in _OPTIONAL}}
                   for c in criteria],
  }


def _read(builder, split: str) -> list[dict]:
  import grain  # loads only for rubric data, like tensorflow_datasets
  ds = grain.MapDataset.source(builder.as_data_source(split)).map(normalize_example)
  return [ds[i] for i in range(len(ds))]


def held_out(example: dict, fraction: float) -> bool:
  return zlib.crc32(example["prompt"].encode("utf-8")) % 10_000 < fraction * 10_000


class RubricSource:
  """Training batches and held-out prompts of a rubric dataset.

  Args:
    data: the config's `data` block; `encode(messages) -> ids` renders and tokenizes a prompt;
    `decode_response(tokens [L], mask [L]) -> str` is what a judge reads of a rollout;
    pad_id / eos_id: the tokenizer's; seed: the run's; width: pad prompts to this many tokens.
  """

  def __init__(self, data, encode, decode_response, *, pad_id: int, eos_id, seed: int,
               width: int | None = None):
    if data.long_prompts not in LONG_PROMPTS:
      raise ValueError(f"data.long_prompts must be one of {LONG_PROMPTS}, got "
                       f"{data.long_prompts!r}")
    builder = build_dataset(data.source, data.path, data.eval_path, data.cache_dir)
    splits = set(builder.info.splits)
    train = _read(builder, "train")
    if "eval" in splits:
      evals = _read(builder, "eval")
    else:
      if not 0 < data.eval_fraction < 1:
        raise ValueError(f"data.eval_fraction must be in (0, 1) without data.eval_path, got "
                         f"{data.eval_fraction}")
      evals = [ex for ex in train if held_out(ex, data.eval_fraction)]
      train = [ex for ex in train if not held_out(ex, data.eval_fraction)]
    self.stats = {}
    train = self._without_zero_weights("train", train, data)
    evals = self._without_zero_weights("eval", evals, data)
    train = self._tokenized("train", train, encode, data)
    evals = self._tokenized("eval", evals, encode, data)[:data.max_eval_prompts or None]
    if not train or not evals:
      raise ValueError(f"{data.path}: {len(train)} training and {len(evals)} held-out prompts "
                       "left; both must be non-empty")
    self.train_examples, self.eval_examples = train, evals
    self.batch_size, self.seed, self.pad_id, self.eos_id = data.prompts_per_step, seed, pad_id, eos_id
    self.width = width or max(len(ex["ids"]) for ex in train + evals)
    k = data.max_criteria or max(len(ex["criteria"]) for ex in train + evals)
    self.categories = _category_names(train + evals)
    self.train_prompts, self.train_rubric = self._arrays(train, k)
    self._rubric_host = host_copy(self.train_rubric)
    self.eval_prompts, self.eval_rubric = self._arrays(evals, k)
    self.train_names = self._names(train, k)
    self.eval_names = np.full(self.eval_rubric.mask.shape, "", object)  # no per-criterion keys
    self.num_prompts = int(max(ex["prompt_id"] for ex in train)) + 1
    self.max_criteria = k
    self.grade = None  # host-side graders only
    self.kind = data.source
    self.decode_response = decode_response

  def _without_zero_weights(self, split: str, examples: list[dict], data) -> list[dict]:
    """The examples without their weight-0 criteria, said aloud (a warning, and a count in
    step 0's row): such a criterion adds nothing to a weighted reward, yet `strict` would
    require it and a judge would be paid to grade it."""
    out, dropped = [], 0
    for ex in examples:
      kept = [c for c in ex["criteria"] if c["weight"] != 0]
      dropped += len(ex["criteria"]) - len(kept)
      out.append({**ex, "criteria": kept})
    self.stats[f"data/{split}_dropped_criteria"] = dropped
    if dropped:
      path = data.eval_path if split == "eval" and data.eval_path else data.path
      warnings.warn(f"{path}: dropped {dropped} {split} criteria of weight 0 (they add nothing "
                    "to a weighted reward, and strict would still require them); counted in "
                    f"step 0's data/{split}_dropped_criteria", stacklevel=2)
    return out

  def _tokenized(self, split, examples, encode, data) -> list[dict]:
    out, cut, dropped = [], 0, 0
    limit = data.max_prompt_tokens
    for ex in examples:
      ids = list(encode(ex["messages"]))
      if limit and len(ids) > limit:
        if data.long_prompts == "skip":
          dropped += 1
          continue
        ids, cut = ids[len(ids) - limit:], cut + 1
      out.append({**ex, "ids": ids})
    self.stats.update({f"data/{split}_prompts": len(out), f"data/{split}_truncated": cut,
                       f"data/{split}_skipped": dropped})
    return out

  def _arrays(self, examples, k):
    tokens, mask = left_pad([ex["ids"] for ex in examples], pad_id=self.pad_id, width=self.width)
    rubric = RubricBatch.from_lists([ex["criteria"] for ex in examples],
                                    prompt_ids=[ex["prompt_id"] for ex in examples],
                                    max_criteria=k)
    return (tokens, mask), rubric

  def _names(self, examples, k) -> np.ndarray:
    """[N, K] slot names for the train/* per-criterion keys: the category's name (a real
    dataset has too many distinct criteria to log one key each)."""
    names = np.full((len(examples), k), "", object)
    for i, ex in enumerate(examples):
      for j, c in enumerate(ex["criteria"]):
        names[i, j] = self.categories[c["category"]]
    return names

  # -- what the loop and the graders read ------------------------------------

  def batch(self, step: int):
    idx = batch_indices(step, len(self.train_examples), self.batch_size, self.seed)
    return make_batch(self.features("train"), self.train_prompts, idx, self._rubric_host), idx

  def examples(self, split: str) -> list[dict]:
    return self.train_examples if split == "train" else self.eval_examples

  def size(self, split: str) -> int:
    return len(self.examples(split))

  def features(self, split: str) -> np.ndarray:
    return np.zeros((self.size(split), 1), np.int32)  # no programmatic grader reads them

  def judge_inputs(self, split: str, rows):
    """(conversations [n] message lists, criteria [n] lists (entry k = slot k), mask [n, K])."""
    examples = self.examples(split)
    rubric = self.train_rubric if split == "train" else self.eval_rubric
    rows = [int(r) for r in rows]
    criteria = [[{"text": c["text"], "weight": c["weight"], "required": c["required"],
                  "category": self.categories[c["category"]], "title": c["title"],
                  **({"rule": c["rule"]} if c["rule"] else {})}  # for grader.kind=rules
                 for c in examples[r]["criteria"]] for r in rows]
    return ([examples[r]["messages"] for r in rows], criteria,
            np.asarray(rubric.mask)[rows])


def _category_names(examples) -> tuple[str, ...]:
  names: dict[int, str] = {}
  for ex in examples:
    for c in ex["criteria"]:
      names.setdefault(c["category"], c["category_name"] or str(c["category"]))
  return tuple(names.get(i, str(i)) for i in range(max(names) + 1))


def _make(config, tokens, width):
  return RubricSource(config.data, tokens.encode, tokens.decode_response, pad_id=tokens.pad_id,
                      eos_id=tokens.eos_id, seed=config.seed, width=width)


def _check(config, checkpoint: str) -> None:
  del checkpoint
  if not config.data.path:
    raise ValueError(f"data.source={config.data.source} needs data.path (a JSONL file or a built "
                     "TFDS directory)")


def rubric_format(builder: str) -> sources.DataSource:
  """The data source of a rubric-file format parsed by the TFDS builder `builder`
  ('module:Class', a `focal.data.rubric_prompts.RubricPromptsBuilder`)."""
  return sources.DataSource(make=_make, check=_check, builder=builder)


sources.register("rar", rubric_format("focal.data.rar:Rar"))
sources.register("healthbench", rubric_format("focal.data.healthbench:Healthbench"))
sources.register("rubric_jsonl", rubric_format("focal.data.rubric_jsonl:RubricJsonl"))
