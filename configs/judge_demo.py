r"""The judged loop end to end on this CPU, offline: a Hugging Face checkpoint, a RaR file and a
local judge, exactly as a real run is set up.

  python -m focal.graders.rule_server --port 8765 &       # the local judge (127.0.0.1:8765)
  python -m experiments.demo_assets --config=configs/judge_demo.py
  python -m experiments.train --config=configs/judge_demo.py --workdir=runs/judge_demo

The second command builds, once, under ~/.cache/focal/judge_demo, what a user brings to a real
run: the tiny scale warm-started on the synthetic suite, exported as a Hugging Face checkpoint
(byte-level tokenizer.json, chat template), and RaR-shaped files of the suite's prompts and
rubrics (focal.demo; reading this config builds nothing). Then the run trains with `data.source=rar` and `grader.kind=judge`: every
(rollout, criterion) is one chat-completion request to the rule server, which answers with the
suite's own rules, so the verdicts are the ones the in-jit grader would give
(tests/test_judged_loop.py checks that bit for bit). Point it at anything else with
`--config.model.checkpoint=DIR`, `--config.data.path=FILE`, `--config.grader.judge.base_url=URL`.

Expected on this 2-core CPU (docs/RESULTS.md section 6): 3 min 16 s on first use (about 50 s
of building the assets when the default run's warm start is cached, then 2.5 min for 60
steps); the held-out mean rubric reward goes 35.65 (the built-in default's step 0: same policy
and prompts) -> 43.54 -> 42.17 -> 45.32 at steps 0/20/40/60. A rerun into a new workdir takes
30 s and gives the same numbers: every verdict comes from the cache.
"""
import os
import warnings

from configs import base
from focal import demo


def _check(arg):
  if arg not in (None, "smoke"):
    raise ValueError(f"unknown variant {arg!r}; choose None or 'smoke'")


def get_assets(arg=None):
  """The synthetic run whose warm-started policy and prompts are the demo's checkpoint and RaR
  files (python -m experiments.demo_assets builds them)."""
  _check(arg)
  synthetic = base.get_config("tiny" if arg == "smoke" else None)
  if arg == "smoke":
    synthetic.warm_start.cache_dir = ""
  return synthetic


def get_config(arg=None):
  """`arg`: None, or 'smoke' (a few steps; for tests)."""
  _check(arg)
  paths = demo.asset_paths(get_assets(arg))
  if not demo.built(paths):
    warnings.warn("configs/judge_demo.py: its checkpoint and RaR files are not built yet; run "
                  "python -m experiments.demo_assets --config=configs/judge_demo.py"
                  + (":smoke" if arg else ""), stacklevel=2)
  checkpoint, train, evals = paths
  c = base.get_config(arg and "tiny")
  c.model.checkpoint = checkpoint
  c.data.source = "rar"
  c.data.path, c.data.eval_path = train, evals
  c.warm_start.steps = 0  # the checkpoint is already warm-started
  c.grader.kind = "judge"
  c.grader.judge.base_url = "http://127.0.0.1:8765/v1"  # python -m focal.graders.rule_server
  c.grader.judge.model = "focal-rules"
  c.grader.judge.temperature = 0.0
  c.grader.judge.cache_path = os.path.join(demo.cache_root(), "verdicts.sqlite")
  c.grader.judge.max_invalid_frac = 0.0  # the rule server answers every suite prompt
  c.total_steps = 4 if arg == "smoke" else 60
  c.eval_every = c.total_steps if arg == "smoke" else 20
  return c
