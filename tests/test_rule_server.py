"""The rule judge server: over HTTP, through the judge client, its verdicts are the in-jit
grader's, bit for bit, for every criterion, template and pitfall mode."""
import json
import os
import subprocess
import sys
import urllib.request

import jax
import numpy as np
import pytest

from focal import tasks
from focal.graders import rule_server
from focal.graders.judge import JudgeClient, JudgeConfig, JudgeCriterion
from focal.tasks import texts
from focal.tokenizers import ByteTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SUITE = tasks.make_suite()
GRADE = jax.jit(SUITE.grade)  # one compilation for every case below


@pytest.fixture(scope="module")
def server():
  s = rule_server.make_server(port=0).start()
  yield s
  s.close()


def random_rollouts(prompts, suite, rng, group):
  """[N, G, L] tokens and masks: the reference answer, then random ids over [0, 260) drawn
  mostly from the prompt's own characters (so criteria pass as well as fail), some stopping
  with EOS, with special ids and bytes that are not UTF-8 mid-response."""
  length = suite.max_response_len
  ref, ref_mask = suite.reference_responses(prompts.features, rng)
  bodies = []
  for i, prompt in enumerate(prompts.tokens):
    bodies.append(ref[i][ref_mask[i]].tolist())
    for _ in range(group - 1):
      n = int(rng.integers(0, length))
      pool = np.concatenate([prompt, rng.integers(0, tasks.VOCAB_SIZE, size=8)])
      body = rng.choice(pool, size=n).tolist()
      if rng.random() < 0.5 and n < length:
        body.append(tasks.EOS)
      bodies.append(body)
  tokens, mask = tasks.pad_responses(bodies, length)
  return tokens.reshape(len(prompts), group, length), mask.reshape(len(prompts), group, length)


@pytest.mark.parametrize("template, pitfall_mode", [("pow3r", "flip"), ("pow3r", "signed"),
                                                    ("healthbench", "signed")])
def test_verdicts_over_http_equal_the_in_jit_grader(server, template, pitfall_mode):
  suite = SUITE
  rng = np.random.default_rng(["pow3r", "healthbench"].index(template) * 2 + len(pitfall_mode))
  prompts = suite.make_prompts("train", 2, seed=int(rng.integers(1 << 30)))
  group = 3
  tokens, mask = random_rollouts(prompts, suite, rng, group)
  tok = ByteTokenizer()
  responses = [[tok.decode_response(tokens[i, g], mask[i, g]) for g in range(group)]
               for i in range(len(prompts))]
  config = JudgeConfig(base_url=server.url, model="focal-rules", template=template,
                       max_concurrency=8, timeout_s=30.0, max_retries=0)
  with JudgeClient(config) as client:
    scores, valid, stats = client.grade(texts.prompt_texts(prompts), responses,
                                        texts.judge_criteria(suite, prompts), prompts.mask,
                                        pitfall_mode)
  n, length = len(prompts), tokens.shape[-1]
  expected = np.asarray(GRADE(np.repeat(prompts.features, group, 0), tokens.reshape(-1, length),
                              mask.reshape(-1, length))).reshape(n, group, -1)
  real = np.broadcast_to(prompts.mask[:, None, :], scores.shape)
  assert stats.errors == {} and valid[real].all() and not valid[~real].any()
  np.testing.assert_array_equal(scores[real], expected[real])
  assert 0 < scores[real].mean() < 1  # both verdicts occur
  pitfalls = real & (np.broadcast_to(prompts.weights[:, None, :], scores.shape) < 0)
  assert pitfalls.any()


def test_unreadable_prompts_get_refusals(server):
  config = JudgeConfig(base_url=server.url, model="focal-rules", timeout_s=30.0, max_retries=0)
  arith = tasks.get("arith")
  with JudgeClient(config) as client:
    cases = [("What is 2+2?", "4", "arith/correct: x"),          # not a suite prompt
             ("12+30=", "42", "the answer is right"),            # no <task>/<criterion>
             ("12+30=", "42", "keywords/has_first: x"),          # another task's criterion
             ("12+30=", "42", "arith/nope: x"),                  # unknown criterion
             ("12+30=", "a<|b", "arith/correct: x")]             # not a decode_response text
    for question, response, text in cases:
      v = client.judge_one(question, response, JudgeCriterion(text, 1.0))
      assert not v.valid and "refused" in v.error and "cannot grade this prompt" in v.error
    good = client.judge_one("12+30=", "42<|eos|>", JudgeCriterion(
        texts.criterion_text("arith", arith.criteria[0]), 5.0))
    assert good.valid and good.score == 1.0


def test_command_line_server(tmp_path):
  proc = subprocess.Popen([sys.executable, "-m", "focal.graders.rule_server", "--port", "0",
                           "--model", "rules-x", "--tasks", "arith,caps"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"})
  try:
    line = proc.stdout.readline()
    assert "focal rule judge: model 'rules-x' at http://127.0.0.1:" in line, line
    url = line.split(" at ")[1].strip()
    with urllib.request.urlopen(url + "/models", timeout=30) as r:
      assert [m["id"] for m in json.load(r)["data"]] == ["rules-x"]
    config = JudgeConfig(base_url=url, model="rules-x", timeout_s=30.0, max_retries=0)
    with JudgeClient(config) as client:
      assert client.preflight()["valid"] is False  # reachable; its question is no suite prompt
      crit = texts.criterion_text("caps", tasks.get("caps").criteria[5])
      # The trainer's preflight asks the run's own first prompt and criterion: answerable.
      assert client.preflight("caps:plum", JudgeCriterion(crit, 5.0))["valid"] is True
      assert client.judge_one("caps:plum", "[PLUM]<|eos|>", JudgeCriterion(crit, 5.0)).score == 1
  finally:
    proc.terminate()
    proc.wait(30)
