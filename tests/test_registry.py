"""The registries a config names components from: the generic `Registry` and `Kinds`, the
contract every registry keeps (aggregators, advantage estimators, data sources, grader kinds),
every grader kind building from its config block and grading a batch, and a new grader kind
added in one module (`test_a_new_grader_kind_is_one_module`)."""
import json
import os

import numpy as np
import pytest

from configs import base
from focal import advantages, aggregators, components, loop, policy
from focal.advantages import base as adv_base
from focal.aggregators import base as agg_base
from focal.data import sources
from focal.graders import kinds as grader_kinds
from focal.graders import rule_server
from focal.graders.stage import HostGrader
from focal.registry import Kinds, Registry
from focal.rundir import RunDir

RAR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "rar_tiny.jsonl")


def test_registry_builds_by_name_and_lists_choices():
  reg = Registry("widget")

  @reg.register("square")
  def square(side: float = 1.0):
    return side * side

  @reg.register("circle")
  def circle(radius: float = 1.0):
    return 3.0 * radius * radius

  assert reg.names() == ("circle", "square")
  assert reg.make("square", side=3.0) == 9.0
  with pytest.raises(ValueError, match=r"unknown widget 'cube'; registered: circle, square"):
    reg.make("cube")
  with pytest.raises(ValueError, match=r"bad hyper-parameters for widget 'circle'.*Accepted: radius"):
    reg.make("circle", diameter=2.0)
  with pytest.raises(ValueError, match="already registered"):
    reg.register("square")(lambda: 0)


# ----------------------------------------------------------------------------
# The contract of every registry.
# ----------------------------------------------------------------------------

# registry, the config field naming one, and how validate refuses an unknown name there
REGISTRIES = {
    "aggregator": (agg_base._AGGREGATORS, ("aggregator", "name"), "unknown aggregator 'nope'"),
    "advantage": (adv_base._ESTIMATORS, ("advantage", "name"),
                  "unknown advantage estimator 'nope'"),
    "data source": (sources.SOURCES, ("data", "source"), "unknown data.source 'nope'; choose from"),
    "grader kind": (grader_kinds.KINDS, ("grader", "kind"),
                    "unknown grader.kind 'nope'; choose from"),
}


def _lookup(registry):
  return registry.get if isinstance(registry, Kinds) else registry.factory


@pytest.mark.parametrize("which", sorted(REGISTRIES))
def test_every_registry_lists_unique_names_and_refuses_an_unknown_one_listing_them(which):
  registry, (section, field), message = REGISTRIES[which]
  names = registry.names()
  assert names and names == tuple(sorted(set(names)))
  c = base.get_config("tiny")
  c[section][field] = "nope"
  with pytest.raises(ValueError, match=message) as e:
    components.validate(c)
  assert all(name in str(e.value) for name in names), str(e.value)
  with pytest.raises(ValueError, match=r"'nope'"):
    _lookup(registry)("nope")
  first = _lookup(registry)(names[0])
  with pytest.raises(ValueError, match="already registered"):
    if isinstance(registry, Kinds):
      registry.register(names[0], first)
    else:
      registry.register(names[0])(lambda: 0)
  assert _lookup(registry)(names[0]) is first and registry.names() == names


@pytest.mark.parametrize("name", aggregators.registered())
def test_every_aggregator_builds_from_its_config_block(name):
  c = base.get_config("tiny")
  c.aggregator.name = name
  agg = components.make_aggregator(c)
  assert callable(agg.update) and callable(agg.init)


@pytest.mark.parametrize("name", advantages.registered_estimators())
def test_every_estimator_builds_from_its_config_block(name):
  c = base.get_config("tiny")
  c.advantage.name = name
  hparams = c.advantage[name].to_dict()
  assert components.estimator_spec(c) == (name, hparams)
  assert callable(advantages.make_estimator(name, **hparams))


@pytest.mark.parametrize("name", grader_kinds.names())
def test_every_grader_kind_record_is_complete_and_its_block_is_in_the_config(name):
  record = grader_kinds.get(name)
  assert isinstance(record, grader_kinds.GraderKind)
  assert callable(record.make) and callable(record.check) and callable(record.make_eval)
  c = base.get_config()
  if record.defaults is not None:
    assert c.grader[name].to_dict() == record.defaults()  # generated, so never restated
  c.grader.kind = name
  limit, field = grader_kinds.invalid_limit(c)
  assert 0.0 <= limit <= 1.0
  if record.invalid_limit:  # a field the config has, named as the loop's error names it
    assert field == f"grader.{record.invalid_limit}"
    block = c.grader
    for part in record.invalid_limit.split("."):
      block = block[part]
    assert limit == block


# ----------------------------------------------------------------------------
# Every grader kind builds from the config and grades a batch.
# ----------------------------------------------------------------------------

GROUP, LENGTH = 2, 24


class WithRules:
  """The synthetic source with a rule on every criterion, as rubric_jsonl's criteria[].rule
  carries them (criterion k: the response has at least 3 (k + 1) characters)."""

  def __init__(self, source):
    self._source = source

  def __getattr__(self, name):
    return getattr(self._source, name)

  def judge_inputs(self, split, rows):
    conversations, criteria, mask = self._source.judge_inputs(split, rows)
    ruled = [[{**c, "rule": json.dumps({"length": {"min": 3 * (k + 1)}})}
              for k, c in enumerate(crits)] for crits in criteria]
    return conversations, ruled, mask


@pytest.fixture(scope="module")
def rule_judge():
  server = rule_server.make_server(port=0).start()
  yield server
  server.close()


def _rollouts(n, seed=0):
  """[n * GROUP, LENGTH] printable bytes and masks: responses of 3, 10, 17, 24, 6, 13, ...
  characters."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(32, 127, (n * GROUP, LENGTH)).astype(np.int32)
  lengths = (np.arange(n * GROUP) * 7 + 3) % (LENGTH + 1)
  return tokens, np.arange(LENGTH)[None, :] < lengths[:, None], lengths


def _grader_config(name, rule_judge):
  c = base.get_config("tiny")
  c.grader.kind = name
  if name == "judge":  # the block's defaults name no endpoint: the local rule judge
    c.grader.judge.base_url, c.grader.judge.model = rule_judge.url, rule_server.DEFAULT_MODEL
    c.grader.judge.max_retries = 0
  return c


@pytest.mark.parametrize("name", grader_kinds.names())
def test_every_grader_kind_builds_from_the_config_and_grades_a_batch(name, rule_judge):
  """Each kind's stage answers the loop's interface; the judge (the rule judge over HTTP) and
  the programmatic checks agree verdict for verdict, and the rules hold by hand."""
  c = _grader_config(name, rule_judge)
  components.validate(c)
  synthetic = components.data_source(c, policy.byte_tokens())
  source = WithRules(synthetic) if name == "rules" else synthetic
  stage = components.make_grader(c, source)
  assert stage.fused == grader_kinds.get(name).in_jit
  assert components.eval_grader(c, source, stage) is stage  # no eval.judge in the config
  rows = [0, 1, 2]
  tokens, mask, lengths = _rollouts(len(rows))
  scores, valid, stats = stage.score("train", rows, tokens, mask, GROUP)
  scores, valid, k = np.asarray(scores), np.asarray(valid), source.max_criteria
  assert scores.shape == valid.shape == (len(rows), GROUP, k) and isinstance(stats, dict)
  real = np.broadcast_to(np.asarray(source.train_rubric.mask)[rows][:, None, :], valid.shape)
  assert valid[real].all() and set(np.unique(scores[valid])) <= {0.0, 1.0}
  if name == "rules":
    expected = lengths.reshape(len(rows), GROUP, 1) >= 3 * (np.arange(k) + 1)
    np.testing.assert_array_equal(scores[valid], expected[valid])
  else:
    programmatic = components.make_grader(_grader_config("programmatic", rule_judge), source)
    want, _, _ = programmatic.score("train", rows, tokens, mask, GROUP)
    np.testing.assert_array_equal(np.where(valid, scores, 0), np.where(valid, want, 0))


def test_the_programmatic_kind_needs_a_source_with_jittable_checks():
  c = base.get_config("tiny")
  c.data.source, c.data.path, c.warm_start.steps = "rar", RAR, 0
  with pytest.raises(ValueError, match=r"data.source=rar has no programmatic grader: set "
                                       r"grader.kind=judge \(or rules\)"):
    components.check_policy_and_data(c)


# ----------------------------------------------------------------------------
# A new grader kind is one module. Everything between the two rules below is what
# focal/graders/kinds/length.py would hold (with its import line in kinds/__init__.py);
# no other file changes: config block, validation, training and evaluation graders and
# the loop's host-graded step all come from the record.
# ----------------------------------------------------------------------------

class LengthReward:
  """Criterion k holds when the response has at least `min_chars * (k + 1)` characters."""

  def __init__(self, min_chars: int):
    self.min_chars = min_chars

  def grade(self, conversations, responses, criteria, mask, pitfall_mode="flip"):
    del conversations, criteria, pitfall_mode
    mask = np.asarray(mask)
    need = self.min_chars * (np.arange(mask.shape[1]) + 1)
    chars = np.array([[len(r) for r in group] for group in responses])[:, :, None]
    valid = np.broadcast_to(mask[:, None, :], chars.shape[:2] + mask.shape[1:])
    return (chars >= need).astype(np.float32), valid, {"invalid_frac": 0.0}


def _make_length(section, source, pitfall_mode):
  return HostGrader(source, LengthReward(section.length.min_chars), pitfall_mode)


LENGTH_KIND = grader_kinds.GraderKind(make=_make_length, defaults=lambda: {"min_chars": 4})
# ... and its registration: grader_kinds.register("length", LENGTH_KIND)
# ----------------------------------------------------------------------------


@pytest.fixture
def length_kind(monkeypatch):
  """`grader_kinds.register("length", LENGTH_KIND)`, undone after the test."""
  monkeypatch.setitem(grader_kinds.KINDS._records, "length", LENGTH_KIND)


def test_a_new_grader_kind_is_one_module(length_kind):
  c = base.get_config("tiny")
  assert c.grader.length.min_chars == 4                    # its block, made from the record
  c.grader.kind, c.grader.length.min_chars = "length", 5   # --config.grader.length.min_chars=5
  components.validate(c)
  source = components.data_source(c, policy.byte_tokens())
  stage = components.make_grader(c, source)
  assert not stage.fused                                   # graded on the host
  tokens, mask, lengths = _rollouts(2)                     # responses of 3, 10, 17, 24 chars
  scores, valid, _ = stage.score("train", [0, 1], tokens, mask, GROUP)
  expected = lengths.reshape(2, GROUP, 1) >= 5 * (np.arange(source.max_criteria) + 1)
  np.testing.assert_array_equal(scores, expected)
  np.testing.assert_array_equal(valid[:, 0, :], np.asarray(source.train_rubric.mask)[[0, 1]])
  assert components.eval_grader(c, source, stage) is stage
  assert grader_kinds.invalid_limit(c)[0] == 0.0


def test_a_new_grader_kind_is_offered_where_the_source_cannot_run_the_default(length_kind):
  c = base.get_config("tiny")
  c.data.source, c.data.path, c.warm_start.steps = "rar", RAR, 0
  with pytest.raises(ValueError, match=r"set grader.kind=judge \(or length, rules\)"):
    components.check_policy_and_data(c)
  c.grader.kind = "nope"
  with pytest.raises(ValueError, match="choose from judge, length, programmatic, rules"):
    components.check_policy_and_data(c)


@pytest.mark.slow  # compiles a host-graded run's rollout and learn programs
def test_a_new_grader_kind_trains_and_evaluates(length_kind, tmp_path):
  c = base.get_config("tiny")
  c.grader.kind, c.warm_start.steps = "length", 0
  c.total_steps = c.eval_every = 2
  final = loop.run(c, str(tmp_path / "run"), progress=False)
  rows = RunDir(str(tmp_path / "run")).rows()
  assert [r["step"] for r in rows] == [0, 1, 2]
  assert "train/judge_seconds" in rows[1] and rows[1]["train/policy_lag"] == 0.0  # host-graded
  assert final["eval/invalid_verdict_frac"] == 0.0
