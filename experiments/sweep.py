r"""Runs a grid of configs, skipping finished runs, then writes the tables and plots.

  python -m experiments.sweep --config=configs/paper/focal.py --workdir=runs/focal_sweep
  python -m experiments.sweep --config=configs/paper/focal.py:smoke --workdir=/tmp/sweep
  python -m experiments.sweep --config=configs/paper/focal.py:full --workdir=results/focal_full \
      --only=model=tiny            # train one slice of a grid; the report covers every finished run

The grid comes from `get_sweep(arg)` in the config file (a list of
{"dotted.field": value} overrides, big_vision's get_hyper style). Each run goes
to WORKDIR/<name>; a run whose metrics already hold its final evaluation is
skipped, and an interrupted one resumes from its checkpoint. The outputs are
WORKDIR/results.csv, WORKDIR/summary.md and WORKDIR/*.png. SIGTERM or SIGINT stops the run in
progress after its current step, checkpointed, with exit status 75; the same command resumes.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from focal import cli, distributed, preemption, sweep
from focal.rundir import ConfigMismatch, MetricsLost, RunDirError, RunLocked

config_flags.DEFINE_config_file("config", None, "A config file that defines get_sweep().",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where the runs and the summary go.", required=True)
flags.DEFINE_bool("report_only", False, "Only rebuild results.csv, summary.md and the plots.")
flags.DEFINE_multi_string("only", None, "Train only grid points whose FIELD=VALUE[,VALUE...] "
                          "matches, e.g. --only=model=tiny (repeatable); the report covers all "
                          "finished runs.")
flags.DEFINE_bool("allow_data_change", False, "Resume runs whose data files changed since they "
                  "started (recorded in each config.json's provenance).")
flags.DEFINE_bool("allow_missing_rows", False, "Resume runs whose metrics.jsonl lost rows "
                  "logged before their checkpoint.")
FLAGS = flags.FLAGS


def _get_sweep():
  module, arg = cli.config_module(FLAGS["config"])
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{module.__file__} defines no get_sweep(arg)")
  return module.get_sweep(arg)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  distributed.maybe_initialize()  # multi-host only when configured (docs/SCALING.md)
  grid = _get_sweep()
  try:
    summary = sweep.run_sweep(FLAGS.config, grid, FLAGS.workdir, train=not FLAGS.report_only,
                              only=sweep.parse_only(FLAGS.only),
                              allow_data_change=FLAGS.allow_data_change,
                              allow_missing_rows=FLAGS.allow_missing_rows)
  except preemption.Preempted as e:
    print(f"focal: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_CODE)
  except (ConfigMismatch, MetricsLost, RunDirError, RunLocked, sweep.EmptyGrid) as e:
    sys.exit(f"error: {e}")
  print(summary)
  if summary == sweep.NO_RUNS:
    print(f"nothing written to {FLAGS.workdir}: no run of the grid has finished")
  else:
    print(f"wrote {os.path.join(FLAGS.workdir, 'summary.md')}")


if __name__ == "__main__":
  app.run(main, argv=cli.expand_aliases(sys.argv))
