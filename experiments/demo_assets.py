r"""Builds the assets a demo config trains on (configs/judge_demo.py): a Hugging Face checkpoint
of the warm-started tiny scale and RaR files of the synthetic suite's prompts, under
~/.cache/focal/judge_demo ($FOCAL_DEMO_CACHE). Idempotent: built assets are kept.

  python -m experiments.demo_assets --config=configs/judge_demo.py          # [:smoke]

The config file's `get_assets(arg)` gives the synthetic run whose policy and prompts become
the assets (focal.demo.prepare); its `get_config(arg)` points a run at them.
"""
from absl import app, flags

from focal import cli, demo

flags.DEFINE_string("config", None, "A demo config file with get_assets, as FILE[:ARG].",
                    required=True)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  module, arg = cli.load_config_file(FLAGS.config)
  if not hasattr(module, "get_assets"):
    raise SystemExit(f"{FLAGS.config}: no get_assets(arg); only demo configs "
                     "(configs/judge_demo.py) have assets to build")
  for name, path in zip(("checkpoint", "train", "eval"), demo.prepare(module.get_assets(arg))):
    print(f"{name:>10}: {path}")


if __name__ == "__main__":
  app.run(main)
