"""The data-source registry (focal.data.sources): every registered source builds from a config
and answers the interface the loop, evaluation and the graders read; a new source is one
registration away from a config."""
import os

import ml_collections
import numpy as np
import pytest

from configs import base
from focal import components, policy
from focal.batch import PromptBatch
from focal.data import sources
from focal.data.synthetic_source import SyntheticSource

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# One small file per rubric format; a registered format without one fails the contract test.
FIXTURES = {"rar": "rar_tiny.jsonl", "healthbench": "healthbench_tiny.jsonl",
            "rubric_jsonl": "rubric_tiny.jsonl"}


def config_for(name: str, tmp_path) -> ml_collections.ConfigDict:
  c = base.get_config("tiny")
  c.data.source = name
  c.data.prompts_per_step = 2
  if not sources.get(name).in_jit_grader:
    c.data.path = os.path.join(DATA, FIXTURES[name])
    c.data.eval_path = c.data.path
    c.data.cache_dir = str(tmp_path / "datasets")
    c.grader.kind = "rules" if name == "rubric_jsonl" else "judge"
    c.warm_start.steps = 0
  return c


def any_chat_bytes() -> policy.Tokens:
  """The byte-level policy's codec with a 'chat template' that takes any conversation (the
  real byte one takes one user turn; HealthBench prompts are multi-turn)."""
  tokens = policy.byte_tokens()
  encode = lambda messages: [257] + list("\n".join(m["content"] for m in messages).encode())
  return policy.Tokens(tokens.pad_id, tokens.stop_ids, encode, tokens.decode_response)


@pytest.mark.parametrize("name", sources.names())
def test_every_source_builds_and_answers_the_loop_interface(name, tmp_path):
  record = sources.get(name)
  assert isinstance(record, sources.DataSource)
  assert record.in_jit_grader or record.builder, f"{name}: a rubric format names its builder"
  c = config_for(name, tmp_path)
  record.check(c, "")
  source = components.data_source(c, any_chat_bytes())
  batch, rows = source.batch(3)
  again, rows_again = source.batch(3)
  assert isinstance(batch, PromptBatch) and np.array_equal(rows, rows_again)
  np.testing.assert_array_equal(batch.tokens, again.tokens)       # a pure function of the step
  b, k = c.data.prompts_per_step, source.max_criteria
  assert batch.tokens.shape == (b, source.width) and batch.rubric.weights.shape == (b, k)
  assert np.asarray(batch.mask)[:, -1].all()                       # left-padded
  assert int(np.max(source.train_rubric.prompt_ids)) < source.num_prompts
  for split, (tokens, mask), rubric, names in (
      ("train", source.train_prompts, source.train_rubric, source.train_names),
      ("eval", source.eval_prompts, source.eval_rubric, source.eval_names)):
    n = source.size(split)
    assert tokens.shape == mask.shape == (n, source.width) and n > 0
    assert rubric.weights.shape == names.shape == (n, k)
    conversations, criteria, crit_mask = source.judge_inputs(split, [0, n - 1])
    assert len(conversations) == len(criteria) == 2 and crit_mask.shape == (2, k)
    for crits, real in zip(criteria, crit_mask):   # entry k is slot k's criterion
      assert len(crits) <= k and all(slot < len(crits) for slot in np.flatnonzero(real))
  assert max(int(c) for c in np.asarray(source.train_rubric.categories)[
      np.asarray(source.train_rubric.mask)]) < len(source.categories)
  assert isinstance(source.decode_response(np.asarray(batch.tokens[0]), np.ones(source.width,
                                                                               bool)), str)
  assert (source.grade is not None) == record.in_jit_grader


def test_an_unknown_source_is_refused_naming_the_field_and_the_choices():
  c = base.get_config("tiny")
  c.data.source = "csv"
  with pytest.raises(ValueError, match=r"unknown data\.source 'csv'; choose from "
                                       r"healthbench, rar, rubric_jsonl, synthetic"):
    components.validate(c)


def test_a_rubric_source_without_a_path_and_the_programmatic_grader_are_refused():
  c = base.get_config("tiny")
  c.data.source, c.warm_start.steps = "rar", 0
  with pytest.raises(ValueError, match="data.source=rar needs data.path"):
    components.validate(c)
  c.data.path = os.path.join(DATA, "rar_tiny.jsonl")
  with pytest.raises(ValueError, match="data.source=rar has no programmatic grader"):
    components.validate(c)
  c.grader.kind, c.warm_start.steps = "judge", 10
  c.grader.judge.base_url = "http://127.0.0.1:9/v1"  # a judge block is checked; never contacted
  c.grader.judge.model = "judge"
  with pytest.raises(ValueError, match="warm_start.steps > 0 imitates"):
    components.validate(c)


def test_a_new_source_is_one_registration(monkeypatch):
  """What a new data source takes: a module with its `make` (and, if it needs one, `check`)
  and one `register` call. Here: the synthetic suite with its held-out prompts as the
  training set too (a toy), reachable from `data.source` with no other edit."""
  class TrainOnHeldOut(SyntheticSource):
    def __init__(self, *args):
      super().__init__(*args)
      self.train_set, self.train_prompts = self.eval_set, self.eval_prompts
      self.train_rubric, self.train_names = self.eval_rubric, self.eval_names
      self._rubric_host = self.eval_rubric

  def make(config, tokens, width):
    d = config.data
    return TrainOnHeldOut(config.task, d.train_prompts_per_task, d.eval_prompts_per_task,
                          d.prompts_per_step, config.seed, width)

  monkeypatch.setitem(sources.SOURCES._records, "held_out_toy",
                      sources.DataSource(make=make, in_jit_grader=True,
                                         reference_responses=True))
  c = base.get_config("tiny")
  c.data.source = "held_out_toy"
  components.validate(c)
  source = components.data_source(c, policy.byte_tokens())
  assert isinstance(source, TrainOnHeldOut)
  _, rows = source.batch(0)
  np.testing.assert_array_equal(source.batch(0)[0].tokens, source.eval_prompts[0][rows])
