r"""Trains one configuration.

  python -m experiments.train                                   # the built-in default (configs/base.py)
  python -m experiments.train --config=configs/base.py --config.aggregator.name=pow3r --workdir=DIR

Resumes from DIR when it holds checkpoints (refused, naming what differs, when its config, data
files or metrics.jsonl changed since; --allow_data_change and --allow_missing_rows opt in) and
ends with a per-category table. SIGTERM or SIGINT (a preempted VM, a scheduler, Ctrl-C) stops it
after the current step with a checkpoint of that step and exit status 75; the same command
resumes. Exit status 1: a run directory, config or data that cannot be used (the message says
why).
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from focal import cli, distributed, loop, preemption, report
from focal.rundir import ConfigMismatch, MetricsLost, RunDirError, RunLocked

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "base.py")
config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Path to a config file.",
                                lock_config=True)
flags.DEFINE_string("workdir", "runs/default", "Where metrics, TensorBoard files and checkpoints go.")
flags.DEFINE_bool("allow_data_change", False, "Resume even though a data file's content changed "
                  "since the run started (recorded in config.json's provenance).")
flags.DEFINE_bool("allow_missing_rows", False, "Resume even though metrics.jsonl lost rows "
                  "logged before the checkpoint (they stay missing).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  distributed.maybe_initialize()  # multi-host only when configured (docs/SCALING.md)
  try:
    final = loop.run(FLAGS.config, FLAGS.workdir, allow_data_change=FLAGS.allow_data_change,
                     allow_missing_rows=FLAGS.allow_missing_rows)
  except preemption.Preempted as e:
    print(f"focal: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_CODE)
  except (ConfigMismatch, MetricsLost, RunDirError, RunLocked) as e:
    sys.exit(f"error: {e}")
  print(report.category_table(final))
  print(f"metrics: {os.path.join(FLAGS.workdir, 'metrics.jsonl')}")


if __name__ == "__main__":
  app.run(main, argv=cli.expand_aliases(sys.argv))
