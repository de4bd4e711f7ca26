r"""Trains one configuration.

  python -m experiments.train                                   # the built-in default (configs/base.py)
  python -m experiments.train --config=configs/base.py --config.aggregator.name=pow3r --workdir=DIR

Resumes from DIR when it holds checkpoints; ends with a per-category table.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from focal import cli, distributed, loop, report

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "base.py")
config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Path to a config file.",
                                lock_config=True)
flags.DEFINE_string("workdir", "runs/default", "Where metrics, TensorBoard files and checkpoints go.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  distributed.maybe_initialize()  # multi-host only when configured (docs/SCALING.md)
  final = loop.run(FLAGS.config, FLAGS.workdir)
  print(report.category_table(final))
  print(f"metrics: {os.path.join(FLAGS.workdir, 'metrics.jsonl')}")


if __name__ == "__main__":
  app.run(main, argv=cli.expand_aliases(sys.argv))
