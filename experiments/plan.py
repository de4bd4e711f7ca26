r"""Will a config fit a TPU slice? Compiles the loop's programs for it, here, without a TPU.

  python -m experiments.plan --config=configs/paper/pow3r_healthbench.py --topology=v5p-8 \
      --config.model.checkpoint=configs/checkpoints/qwen3-4b --config.mesh.shape='(1,4,1)' \
      --json=plan.json

Reads only config.json from `model.checkpoint` (no weights, tokenizer or data). Prints, per chip
and program, the memory XLA compiled for, the resident state, the fit against HBM with 10%
headroom, compile seconds and a roofline time; where a program does not fit, the excess and the
largest micro-batch sizes that fit. Needs the TPU compiler: pip install -e ".[plan]".
"""
import json
import os
import sys

# libtpu's machine-wide lock would refuse the compile-only TPU while any other JAX process runs.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from focal import cli  # noqa: E402
from focal.plan import make_plan  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("topology", None, "TPU slice: v5e-8, v5p-8, v5p-16, v4-8, v6e-8, ...")
flags.DEFINE_string("json", "", "Also write the plan as JSON to this path.")
flags.DEFINE_integer("num_prompts", 5000, "Training prompts (the aggregator's per-prompt state).")
flags.DEFINE_integer("max_criteria", 64, "Criterion slots per prompt, unless data.max_criteria.")
flags.DEFINE_integer("eval_prompts", -1, "Held-out prompts the evaluation samples (its program "
                     "is compiled too); -1: data.max_eval_prompts (0 there means all the data's, "
                     "which the plan does not read: give the count), 0: no evaluation program.")
flags.DEFINE_list("only", [], "Compile only these programs (rollout, learn, train, evaluate).")
flags.DEFINE_bool("search", True, "Where a program does not fit, find the largest micro-batch "
                  "sizes that do (one compile per size tried).")
flags.mark_flags_as_required(["config", "topology"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  eval_prompts = FLAGS.eval_prompts
  if eval_prompts < 0:
    eval_prompts = FLAGS.config.data.max_eval_prompts
  plan = make_plan(FLAGS.config, FLAGS.topology, FLAGS.num_prompts, FLAGS.max_criteria,
                   eval_prompts, FLAGS.search, tuple(FLAGS.only),
                   log=lambda s: print(s, file=sys.stderr, flush=True))
  print(plan.format())
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(plan.to_json(), f, indent=2)
  return 0 if plan.fits else 1


if __name__ == "__main__":
  app.run(main, argv=cli.expand_aliases(sys.argv))
