"""The generic `rubric_prompts` format every rubric dataset is converted to.

One example per prompt:
  prompt_id: int64, dense and unique across the splits of one build (indexes
             per-prompt aggregator state, so it must stay small and stable)
  source:    str, where the prompt comes from (HealthBench prompt_id, RaR question_source)
  prompt:    str, the conversation rendered by `render_chat` (what a judge reads)
  messages:  str, the conversation as JSON [{role, content}] (what a chat template renders)
  reference: str, a reference answer ("" when the source has none)
  criteria:  Sequence({text: str, weight: float32 signed, category: int32, required: bool,
                       title: str, category_name: str, rule: str (JSON; "" = none)})

Builders subclass `RubricPromptsBuilder`, read local files given by path (no
downloads) and write array_record shards readable without TensorFlow via
`builder.as_data_source(split)`.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow_datasets as tfds

from focal.data.records import RecordError, user_turn  # noqa: F401  (builders use it)

FILE_FORMAT = "array_record"


def features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "prompt_id": np.int64,
      "source": tfds.features.Text(),
      "prompt": tfds.features.Text(),
      "messages": tfds.features.Text(),
      "reference": tfds.features.Text(),
      "criteria": tfds.features.Sequence({
          "text": tfds.features.Text(),
          "weight": np.float32,
          "category": np.int32,
          "required": np.bool_,
          "title": tfds.features.Text(),
          "category_name": tfds.features.Text(),
          "rule": tfds.features.Text(),
      }),
  })


def criterion(text: str, weight: float, category: int, required: bool, title: str = "",
              category_name: str = "", rule: str = "") -> dict:
  """One `criteria` entry, with every optional field filled."""
  return {"text": text, "weight": weight, "category": category, "required": required,
          "title": title, "category_name": category_name or str(category), "rule": rule}


def render_chat(messages: Iterable[Mapping[str, str]]) -> str:
  """'role: content' turns separated by blank lines (HealthBench's grader rendering)."""
  return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def check_weights(criteria: list[dict], path: str, line: int, field: str) -> None:
  """A rubric needs a criterion, finite weights and at least one non-zero weight."""
  if not criteria:
    raise RecordError(path, line, field, "the record has no rubric criteria")
  weights = [c["weight"] for c in criteria]
  for j, w in enumerate(weights):
    if not math.isfinite(w):
      raise RecordError(path, line, f"{field}[{j}].weight", f"must be finite, got {w}")
  if all(w == 0 for w in weights):
    raise RecordError(path, line, field, "every criterion weight is zero")


def builder_configs(**descriptions: str) -> list:
  """TFDS builder configs by name: description (a builder's BUILDER_CONFIGS)."""
  return [tfds.core.BuilderConfig(name=name, description=text)
          for name, text in descriptions.items()]


class RubricPromptsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base builder: subclasses implement `parse_file(path) -> list[example without prompt_id]`.

  Args:
    source_files: split name -> local file. Needed to build, not to read back.
    data_dir: where the dataset is written/read.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "messages (JSON turns); criteria title, category_name and rule."}

  def __init__(self, *, source_files: Mapping[str, str | os.PathLike] | None = None, **kwargs):
    self._source_files = {k: os.fspath(v) for k, v in (source_files or {}).items()}
    kwargs.setdefault("file_format", FILE_FORMAT)
    super().__init__(**kwargs)

  def parse_file(self, path: str) -> list[dict[str, Any]]:
    raise TypeError(f"{type(self).__name__} must define parse_file(path)")

  @tfds.core.utils.classproperty
  @classmethod
  def url_infos(cls):
    # No downloads, so no checksums file. TFDS's own lookup of one next to the code
    # needs `importlib_resources` for builders that live in a package.
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    # Keep file order on disk; shuffling is the input pipeline's job (seeded, checkpointable).
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__, features=features(),
                                 disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager  # local files only
    if not self._source_files:
      raise ValueError(f"{self.name}: pass source_files={{split: path}} to build the dataset")
    # Parse everything before any shard is written: a bad record aborts with nothing on disk.
    parsed, next_id = {}, 0
    for split, path in self._source_files.items():
      examples = self.parse_file(path)
      if not examples:
        raise RecordError(path, 0, None, "the file has no records")
      for ex in examples:
        ex["prompt_id"] = next_id
        next_id += 1
      parsed[split] = examples
    parsed = self.finalize(parsed)
    return {split: self._generate_examples(examples) for split, examples in parsed.items()}

  def finalize(self, parsed: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Post-processes every split's examples at once (e.g. category ids shared by splits)."""
    return parsed

  def _generate_examples(self, examples):
    for ex in examples:
      yield ex["prompt_id"], ex


def build(builder: RubricPromptsBuilder) -> RubricPromptsBuilder:
  """Builds `builder` into its data_dir; on failure leaves no new file or directory behind.

  TFDS already writes into a temporary directory and renames it on success;
  this also removes the parent directories and config marker it creates first.
  """
  root = os.path.abspath(os.fspath(builder.data_dir_root))
  existed = os.path.exists(root)
  before = _snapshot(root) if existed else set()
  try:
    # Nothing is downloaded; a throwaway download_dir keeps TFDS from leaving one in data_dir.
    with tempfile.TemporaryDirectory() as download_dir:
      builder.download_and_prepare(
          download_dir=download_dir,
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  except BaseException:
    _remove_new(root, before, existed)
    raise
  return builder


def _snapshot(root: str) -> set[str]:
  paths = set()
  for dirpath, dirnames, filenames in os.walk(root):
    paths.update(os.path.join(dirpath, n) for n in dirnames + filenames)
  return paths


def _remove_new(root: str, before: set[str], existed: bool) -> None:
  if not existed:
    shutil.rmtree(root, ignore_errors=True)
    return
  # Deepest first, so a new directory is empty of new files by the time it is visited.
  for path in sorted(_snapshot(root) - before, key=len, reverse=True):
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)
