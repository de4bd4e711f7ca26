"""What evaluating a saved run allocates: the evaluation build against the training build.

  python benchmarks/eval_memory.py [--dir DIR]

Makes a run of a 24M-parameter policy (a random float32 Qwen3-shaped model, d_model 512, 6
layers, with the tests' small Qwen3 tokenizer and chat template: tests/chat_checkpoint.py) trained
one GRPO step by `focal.loop` on the tests' rubric file (tests/data/rubric_tiny.jsonl, graded by
its rules, no warm start) in a temporary directory (or --dir, kept and reused). Then a fresh
subprocess per path builds and restores the last checkpoint's parameters, and reports the bytes
of live jax arrays after the build and after the restore, and the process's peak resident set:

  eval_build      focal.eval_build.build + restore_params (what evaluate_checkpoint and
                  experiments.export run)
  training build  components.build + a restore of the whole TrainState (what they ran before)

Expected: the evaluation build holds no array after building and the parameters alone (1.0x)
after restoring; the training build holds the parameters and AdamW's two float32 moments (3.0x)
after building, and a second such state while restoring (6.0x).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MIB = 2 ** 20
TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
sys.path.insert(0, TESTS)  # chat_checkpoint: a random Qwen3 with Qwen3's chat template
SHAPE = dict(d_model=512, n_layers=6, n_heads=8, n_kv_heads=8, head_dim=64, d_ff=1920)


def make_run(directory: str) -> str:
  """A one-step run of the 24M policy under `directory`/run (kept when it is there)."""
  from configs import base
  from focal import loop
  from focal.rundir import RunDir
  from chat_checkpoint import make_chat_checkpoint
  workdir, hf = os.path.join(directory, "run"), os.path.join(directory, "policy")
  if RunDir(workdir).checkpoint_steps():
    return workdir
  make_chat_checkpoint(hf, **SHAPE)
  c = base.get_config("tiny")
  c.model.checkpoint = hf
  c.data.source, c.data.path = "rubric_jsonl", os.path.join(TESTS, "data", "rubric_tiny.jsonl")
  c.data.eval_path, c.data.cache_dir = c.data.path, os.path.join(directory, "datasets")
  c.data.prompts_per_step, c.data.max_prompt_tokens = 2, 256
  c.grader.kind = "rules"
  c.grpo.group_size, c.grpo.max_new_tokens = 2, 8
  c.warm_start.steps = 0
  c.total_steps = c.eval_every = c.checkpoint_every = 1
  loop.run(c, workdir, progress=False)
  return workdir


def _peak_rss() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def measure(workdir: str, path: str) -> dict:
  """Live jax array bytes after the build and after the restore of `path` (in this process)."""
  import jax
  from focal import components, eval_build, evaluation, models
  from focal.rundir import RunDir
  live = lambda: sum(a.nbytes for a in jax.live_arrays())
  config = evaluation.load_config(workdir)
  if path == "eval_build":
    setup = eval_build.build(config)
    built = live()
    params, _ = eval_build.restore_params(setup, workdir)
    restored = live()
  else:
    config.warm_start.steps = 0
    setup = components.build(config, progress=False)
    built = live()
    ckpt = RunDir(workdir).checkpointer(keep=None, async_save=False)
    state, _ = ckpt.restore(setup.state)
    ckpt.close()
    restored, params = live(), state.params
  return {"path": path, "params": models.param_count(params),
          "param_bytes": sum(x.nbytes for x in jax.tree.leaves(params)),
          "built": built, "restored": restored, "peak_rss": _peak_rss()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dir", default="", help="where the run goes (default: a temporary one)")
  parser.add_argument("--measure", nargs=2, metavar=("WORKDIR", "PATH"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.measure:
    print(json.dumps(measure(*args.measure)))
    return
  directory = args.dir or tempfile.mkdtemp(prefix="focal-eval-memory-")
  workdir = make_run(directory)
  rows = []
  for path in ("eval_build", "training build"):
    out = subprocess.run([sys.executable, __file__, "--measure", workdir, path], check=True,
                         capture_output=True, text=True)
    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
  p = rows[0]["param_bytes"]
  print(f"run: {workdir}  policy: {rows[0]['params'] / 1e6:.1f}M parameters, "
        f"{p / MIB:.1f} MiB float32")
  print(f"{'path':<16}{'arrays after build':>22}{'after restore':>22}{'peak RSS':>12}")
  for r in rows:
    print(f"{r['path']:<16}{r['built'] / MIB:>11.1f} MiB ({r['built'] / p:3.1f}x)"
          f"{r['restored'] / MIB:>11.1f} MiB ({r['restored'] / p:3.1f}x)"
          f"{r['peak_rss'] / MIB:>8.0f} MiB")


if __name__ == "__main__":
  main()
