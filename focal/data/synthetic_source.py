"""The synthetic task suite as the training loop's data source.

Batches are a pure function of (seed, step): epochs of seeded permutations of the
training prompts, so a run's data position is its step and a resumed run sees
exactly the batches an uninterrupted one would. Prompts are BOS + the prompt's
bytes, left-padded to a common width; criteria are named '<task>/<criterion>'.
"""
from __future__ import annotations

import jax
import numpy as np

from focal import sampling, tasks
from focal.batch import PromptBatch
from focal.data import sources
from focal.tasks import texts
from focal.tokenizers import ByteTokenizer


def encode_prompts(prompt_set, width: int | None = None):
  """BOS + prompt bytes, left-padded: (tokens [N, P] int32, mask [N, P] bool)."""
  seqs = [[tasks.BOS] + list(t) for t in prompt_set.tokens]
  return sampling.left_pad(seqs, pad_id=tasks.PAD, width=width)


def prompt_sets(task: str, train_per_task: int, eval_per_task: int, seed: int):
  """(suite, train PromptSet, eval PromptSet); `task` is 'suite' or one task's name."""
  if task != "suite" and task not in tasks.names():
    raise ValueError(f"unknown task {task!r} (config.task); choose 'suite' or one of "
                     f"{', '.join(tasks.names())}")
  suite = tasks.make_suite(None if task == "suite" else [task])
  return (suite, suite.make_prompts("train", train_per_task, seed),
          suite.make_prompts("eval", eval_per_task, seed))


def prompt_width(train_set, eval_set) -> int:
  """Tokens of the longest prompt with its BOS: the padded prompt width."""
  return 1 + max(len(t) for t in list(train_set.tokens) + list(eval_set.tokens))


def criterion_names(suite, features, mask) -> np.ndarray:
  """[N, K] '<task>/<criterion>' of each prompt's slots ('' on disabled slots)."""
  names = np.full(mask.shape, "", dtype=object)
  for row, t_index in enumerate(suite.task_index(features)):
    task = suite.tasks[int(t_index)]
    for k, criterion in enumerate(task.criteria):
      if mask[row, k]:
        names[row, k] = f"{task.name}/{criterion.name}"
  return names


def batch_indices(step: int, num_prompts: int, batch_size: int, seed: int) -> np.ndarray:
  """Prompts of step `step`: epochs of seeded permutations, a pure function of (seed, step)."""
  start = step * batch_size
  positions = np.arange(start, start + batch_size)
  epochs = positions // num_prompts
  out = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    perm = np.random.default_rng([seed, int(epoch)]).permutation(num_prompts)
    sel = epochs == epoch
    out[sel] = perm[positions[sel] % num_prompts]
  return out


def host_copy(tree):
  """`tree`'s arrays as numpy (batches are cut from host copies; see make_batch)."""
  return jax.tree.map(np.asarray, tree)


def make_batch(features, prompts, idx, rubric) -> PromptBatch:
  """Rows `idx` of a prompt set's features [N, F], (tokens, mask) [N, P] and RubricBatch
  (built and validated once per run: that costs more host time than the rest of a batch), as
  numpy arrays that the step's placement puts on the devices."""
  tokens, mask = prompts
  # A host batch of host arrays: reading a device array queues behind the previous step's work
  # and would make the host wait for it (no overlap of a host grader with the device).
  take = lambda x: np.asarray(x)[idx]
  return PromptBatch(take(tokens), take(mask), take(features), jax.tree.map(take, rubric))


_BYTES = ByteTokenizer()


class SyntheticSource:
  """Training batches and held-out prompts of the synthetic suite.

  Attributes:
    suite: the `focal.tasks.Suite`; `grade` is its jittable grader.
    train_set, eval_set: PromptSets; train_prompts, eval_prompts: (tokens [N, P], mask [N, P]).
    train_rubric, eval_rubric: RubricBatch of every training / held-out prompt, validated once.
    train_names, eval_names: [N, K] '<task>/<criterion>' per slot ('' on padding).
    categories: category names, indexed by category id.
  """

  eos_id = tasks.EOS
  pad_id = tasks.PAD

  def __init__(self, task: str, train_per_task: int, eval_per_task: int, batch_size: int,
               seed: int, width: int | None = None):
    self.suite, self.train_set, self.eval_set = prompt_sets(task, train_per_task, eval_per_task,
                                                            seed)
    self.batch_size, self.seed = batch_size, seed
    self.width = width or prompt_width(self.train_set, self.eval_set)
    self.train_prompts = encode_prompts(self.train_set, self.width)
    self.eval_prompts = encode_prompts(self.eval_set, self.width)
    self.train_rubric = self.train_set.rubric()
    self._rubric_host = host_copy(self.train_rubric)
    self.eval_rubric = self.eval_set.rubric()
    self.train_names = criterion_names(self.suite, self.train_set.features, self.train_set.mask)
    self.eval_names = criterion_names(self.suite, self.eval_set.features, self.eval_set.mask)
    self.grade = self.suite.grade
    self._judge_inputs: dict = {}

  @property
  def num_prompts(self) -> int:
    return len(self.train_set)

  @property
  def max_criteria(self) -> int:
    return self.suite.num_criteria

  @property
  def categories(self) -> tuple:
    return self.suite.categories

  def batch(self, step: int) -> tuple[PromptBatch, np.ndarray]:
    """(PromptBatch of step `step`, the training-prompt rows it holds [B])."""
    idx = batch_indices(step, self.num_prompts, self.batch_size, self.seed)
    return make_batch(self.train_set.features, self.train_prompts, idx, self._rubric_host), idx

  # -- for graders -------------------------------------------------------------

  def prompt_set(self, split: str):
    return self.train_set if split == "train" else self.eval_set

  def size(self, split: str) -> int:
    return len(self.prompt_set(split))

  def features(self, split: str) -> np.ndarray:
    """[N, F] what the programmatic grader reads about each prompt of `split`."""
    return np.asarray(self.prompt_set(split).features)

  def judge_inputs(self, split: str, rows):
    """(prompt texts [n], criteria [n] lists (entry k = slot k), mask [n, K]) for a judge."""
    if split not in self._judge_inputs:
      prompts = self.prompt_set(split)
      self._judge_inputs[split] = (texts.prompt_texts(prompts),
                                   texts.judge_criteria(self.suite, prompts))
    prompts, criteria = self._judge_inputs[split]
    rows = [int(r) for r in rows]
    return ([prompts[r] for r in rows], [criteria[r] for r in rows],
            np.asarray(self.prompt_set(split).mask)[rows])

  def decode_response(self, tokens, mask) -> str:
    """The response as lossless text (special ids as markers; see ByteTokenizer)."""
    return _BYTES.decode_response(tokens, mask)


def _make(config, tokens, width):
  del tokens  # the suite's prompts are bytes, whatever the policy
  d = config.data
  return SyntheticSource(config.task, d.train_prompts_per_task, d.eval_prompts_per_task,
                         d.prompts_per_step, config.seed, width)


def _check(config, checkpoint: str) -> None:
  if config.task != "suite" and config.task not in tasks.names():
    raise ValueError(f"unknown task {config.task!r} (config.task); choose 'suite' or one of "
                     f"{', '.join(tasks.names())}")
  if checkpoint:
    others = "|".join(n for n in sources.names() if not sources.get(n).in_jit_grader)
    raise ValueError("data.source=synthetic trains the byte-level scales; with "
                     f"model.checkpoint, use data.source={others}")


sources.register("synthetic", sources.DataSource(make=_make, check=_check, in_jit_grader=True,
                                                 reference_responses=True))
