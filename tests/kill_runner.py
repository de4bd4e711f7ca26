"""Trains the tiny preset and, on request, kills itself at a chosen point: with SIGKILL, the way
a crashed or hard-killed job dies, or with SIGTERM/SIGINT, the way a preempted VM, a scheduler or
Ctrl-C ends one (tests/test_kill.py).

  python tests/kill_runner.py WORKDIR [before_save:STEP | in_save:STEP | none]
  python tests/kill_runner.py WORKDIR SIGNAL:WHERE:STEP [--sparse] [--process I]
      SIGNAL: SIGTERM or SIGINT; WHERE: in_step (while step STEP computes, before its rows are
      written) or in_eval (during step STEP's evaluation)
  --sparse: checkpoint at the final step only, so that a stopped run's checkpoint is the one
      the signal made it write.  --process I: send the signal on process I only (multi-process
      runs: FOCAL_COORDINATOR, FOCAL_NUM_PROCESSES, FOCAL_PROCESS_ID in the environment).

Exit status: 0 when the run finished, focal.preemption.EXIT_CODE when a signal stopped it.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import base  # noqa: E402
from focal import distributed, evaluation, loop, preemption, recorder, replicas  # noqa: E402


def config(sparse: bool = False, lora: bool = False):
  c = base.get_config("tiny")
  c.model.lora.rank = 4 if lora else 0  # --lora: adapters on the warm-started base
  c.warm_start.cache_dir = ""
  c.total_steps = 5
  c.eval_every = 5
  c.checkpoint_every = 5 if sparse else 1
  c.aggregator.name = "pow3r"
  return c


def _kill_around_saves(where: str, step: int) -> None:
  original = recorder.Recorder._save

  def save(self, done, state, seconds):
    if where == "before_save" and done == step:
      os.kill(os.getpid(), signal.SIGKILL)  # the step's row is written, its checkpoint is not
    original(self, done, state, seconds)
    if where == "in_save" and done == step:
      os.kill(os.getpid(), signal.SIGKILL)  # the async save is still being written

  recorder.Recorder._save = save


def _signal_at(signame: str, where: str, step: int) -> None:
  """Sends `signame` to this process while step `step` (1-based: the step that ends with
  `step` done) trains, or during its evaluation."""
  sig = getattr(signal, signame)
  if where == "in_step":
    original = replicas.ShardedRun.step

    def step_fn(self, state, t, last=False):
      out = original(self, state, t, last)
      if t + 1 == step:
        os.kill(os.getpid(), sig)  # arrives before the step's rows, evaluation and checkpoint
      return out

    replicas.ShardedRun.step = step_fn
  elif where == "in_eval":
    original = evaluation.evaluate_both

    def evaluate_both(setup, params, rng, at):
      if at == step:
        os.kill(os.getpid(), sig)  # in the middle of the step's evaluation
      return original(setup, params, rng, at)

    evaluation.evaluate_both = evaluate_both
  else:
    raise ValueError(f"unknown place {where!r}")


def main(argv) -> None:
  workdir, kill = argv[0], argv[1] if len(argv) > 1 else "none"
  sparse, lora = "--sparse" in argv, "--lora" in argv
  target = int(argv[argv.index("--process") + 1]) if "--process" in argv else None
  distributed.maybe_initialize()
  import jax
  if kill.startswith("SIG"):
    signame, where, step = kill.split(":")
    if target is None or target == jax.process_index():
      _signal_at(signame, where, int(step))
  elif kill != "none":
    where, step = kill.split(":")
    _kill_around_saves(where, int(step))
  c = config(sparse, lora)
  if jax.process_count() > 1:
    c.mesh.shape = (jax.process_count(), 1, 1)  # a multi-process run uses every device
  try:
    loop.run(c, workdir, progress=False)
  except preemption.Preempted as e:
    print(f"focal: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_CODE)


if __name__ == "__main__":
  main(sys.argv[1:])
