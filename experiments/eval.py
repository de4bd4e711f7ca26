r"""Evaluates a checkpoint of a run on the held-out prompts, greedy and sampled.

  python -m experiments.eval --workdir=DIR                      # latest checkpoint, DIR/config.json
  python -m experiments.eval --workdir=DIR --step=100 --output=eval.json
  python -m experiments.eval --workdir=DIR --config=configs/saved.py:DIR --config.eval.num_samples=16

Without --config the run's saved config is used; pass one (any config file, with
--config.* overrides) to evaluate under other settings. Prints the METHODS §7
metrics and the per-category pass rates; --output also writes them as JSON.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from focal import cli, distributed, evaluation
from focal.graders.judge import JudgeError
from focal.host_step import TooManyInvalid

config_flags.DEFINE_config_file("config", None, "Config file; default: WORKDIR/config.json.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "The run's directory (holds checkpoints/).", required=True)
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate; default: the latest.")
flags.DEFINE_string("output", None, "Also write the metrics as JSON to this file.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  distributed.maybe_initialize()  # multi-host only when configured (docs/SCALING.md)
  try:
    row = evaluation.evaluate_checkpoint(FLAGS.workdir, FLAGS.config, FLAGS.step)
  except (FileNotFoundError, ValueError, JudgeError, TooManyInvalid) as e:
    sys.exit(f"error: {e}")  # a judge too broken to score with is no score (exit 1)
  print(evaluation.format_report(row))
  if FLAGS.output:
    evaluation.write_json(row, FLAGS.output)
    print(f"metrics: {FLAGS.output}")


if __name__ == "__main__":
  app.run(main, argv=cli.expand_aliases(sys.argv))
