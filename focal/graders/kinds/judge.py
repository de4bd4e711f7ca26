"""`grader.kind=judge`: an OpenAI-compatible LLM judge (focal.graders.judge), one request per
(prompt, rollout, criterion), configured by the block `grader.judge`; evaluation asks a judge of
its own, `eval.judge`, when that names an endpoint (the papers evaluate with a stronger judge)."""
import dataclasses

import numpy as np

from focal.graders import kinds
from focal.graders.judge import JudgeClient, JudgeConfig
from focal.graders.judge.config import check_block
from focal.graders.stage import HostGrader


def defaults() -> dict:
  """JudgeConfig's fields and defaults (focal.graders.judge.config documents each)."""
  return {f.name: f.default for f in dataclasses.fields(JudgeConfig)}


def make(section, source, pitfall_mode: str):
  client = JudgeClient(JudgeConfig.from_mapping(section.judge.to_dict()))
  conversations, criteria, crit_mask = source.judge_inputs("train", [0])
  first = int(np.argmax(crit_mask[0]))
  # An unreachable endpoint, a refused key or an unknown model stop here, on a real request.
  client.preflight(conversations[0], criteria[0][first])
  return HostGrader(source, client, pitfall_mode)


def evaluates_with_eval_judge(config) -> bool:
  """Whether `eval.judge` names an endpoint (the papers evaluate with a stronger judge than they
  train with); otherwise evaluation grades with the training grader."""
  return bool(config.eval.judge.base_url)


def make_eval(config, source, pitfall_mode: str):
  """`eval.judge`'s grader when that names an endpoint, else None (the training judge's)."""
  return make(config.eval, source, pitfall_mode) if evaluates_with_eval_judge(config) else None


kinds.register("judge", kinds.GraderKind(
    make=make, defaults=defaults, check=lambda config: check_block(config, "grader"),
    make_eval=make_eval, invalid_limit="judge.max_invalid_frac"))
