"""The synthetic task suite as a TFDS dataset (array_record, no TensorFlow).

Prompts of `focal.tasks` are generated deterministically from a seed; this
builder writes them in the `rubric_prompts` format plus what the programmatic
graders need, so the suite travels like any other rubric dataset:

  task:            str, the task's name
  grader_features: int32 [F], the prompt parameters `task.grade` reads
  criteria[].text: `<task>/<criterion>: description` (focal.tasks.texts), which the rule
                   judge server reads; title: the criterion's name; category ids are the
                   task's own (index into `focal.tasks.get(task).categories`)

The builder config is named by its parameters (`n{per_task}_s{seed}`), so
different sizes or seeds never overwrite each other.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from focal import tasks
from focal.tasks.base import SPLITS
from focal.data.rubric_prompts import RubricPromptsBuilder, criterion, features, user_turn
from focal.tasks.texts import criterion_text


class SyntheticSuite(RubricPromptsBuilder):
  """Prompts and rubrics of the synthetic tasks (train and eval splits)."""

  def __init__(self, *, num_per_task: int = 128, seed: int = 0, task_names=None, **kwargs):
    self._task_names = tuple(task_names or tasks.names())
    for name in self._task_names:
      tasks.get(name)  # unknown names fail here, with the choices
    self._num_per_task = int(num_per_task)
    self._seed = int(seed)
    name = f"n{self._num_per_task}_s{self._seed}_" + "-".join(self._task_names)
    kwargs.setdefault("config", tfds.core.BuilderConfig(name=name))
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    feats = dict(features())
    feats["task"] = tfds.features.Text()
    feats["grader_features"] = tfds.features.Tensor(shape=(None,), dtype=np.int32)
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=tfds.features.FeaturesDict(feats),
                                 disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    for name in self._task_names:
      task = tasks.get(name)
      prompts = task.make_prompts(split, self._num_per_task, self._seed)
      for i in range(len(prompts)):
        criteria = [criterion(criterion_text(name, c), float(prompts.weights[i, k]),
                              int(prompts.categories[i, k]), bool(prompts.required[i, k]),
                              title=c.name, category_name=c.category)
                    for k, c in enumerate(task.criteria) if prompts.mask[i, k]]
        prompt = bytes(prompts.tokens[i]).decode("utf-8")
        example = {"prompt_id": int(prompts.prompt_ids[i]), "source": f"focal.tasks/{name}",
                   "prompt": prompt, "messages": user_turn(prompt), "reference": "",
                   "criteria": criteria, "task": name,
                   "grader_features": prompts.features[i].astype(np.int32)}
        yield f"{name}/{int(prompts.prompt_ids[i])}", example
