"""Trains the tiny preset and, on request, kills itself with SIGKILL at a chosen point, the way
a preempted job dies (tests/test_kill.py).

  python tests/kill_runner.py WORKDIR [before_save:STEP | in_save:STEP | none]
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import base  # noqa: E402
from focal import loop  # noqa: E402


def config():
  c = base.get_config("tiny")
  c.warm_start.cache_dir = ""
  c.total_steps = 5
  c.eval_every = 5
  c.checkpoint_every = 1
  c.aggregator.name = "pow3r"
  return c


def main(workdir: str, kill: str) -> None:
  if kill != "none":
    where, step = kill.split(":")
    original = loop.Recorder._save

    def save(self, done, state, seconds):
      if where == "before_save" and done == int(step):
        os.kill(os.getpid(), signal.SIGKILL)  # the step's row is written, its checkpoint is not
      original(self, done, state, seconds)
      if where == "in_save" and done == int(step):
        os.kill(os.getpid(), signal.SIGKILL)  # the async save is still being written

    loop.Recorder._save = save
  loop.run(config(), workdir, progress=False)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "none")
