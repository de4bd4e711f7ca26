r"""Exports a run's policy as a Hugging Face checkpoint (config, safetensors, tokenizer files).

  python -m experiments.export --workdir=DIR --out=HF_DIR            # latest checkpoint
  python -m experiments.export --workdir=DIR --out=HF_DIR --step=100 --dtype=bfloat16

`focal.eval_build.export_run` reads the run: its saved config gives the policy's structure and
the checkpoint's parameters alone are restored (no optimizer, no grader, so a judged run exports
with its judge down); `focal.models.hf_export.export_checkpoint` writes them: a byte-vocabulary
policy with a byte-level tokenizer.json and a chat template that renders a user prompt as BOS +
its bytes (what training fed it); a policy trained from an HF checkpoint (config
`model.checkpoint`) with that checkpoint's tokenizer files. A LoRA run (`model.lora.rank` > 0)
is written with its adapters merged into the kernels (W + (alpha / r) A B): a standard
checkpoint of the trained policy. `--peft_out=DIR` also writes the adapters alone in peft's
layout (focal.models.peft_export), on the run's `model.checkpoint`, or for a scale's
warm-started base on its export, written to DIR/base.
`AutoModelForCausalLM.from_pretrained(HF_DIR)` then loads it.
"""
import sys

from absl import app, flags, logging

from focal import eval_build

flags.DEFINE_string("workdir", None, "The run's directory (holds config.json, checkpoints/).",
                    required=True)
flags.DEFINE_string("out", None, "Directory to write the Hugging Face checkpoint to.",
                    required=True)
flags.DEFINE_integer("step", None, "Checkpoint step to export; default: the latest.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                  "Stored tensor dtype; default: the policy's parameter dtype.")
flags.DEFINE_bool("overwrite", False, "Replace --out if it exists and is not empty.")
flags.DEFINE_string("peft_out", "", "A LoRA run: also write its adapters in peft's layout here.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  try:
    step, files = eval_build.export_run(FLAGS.workdir, FLAGS.out, FLAGS.step, FLAGS.dtype,
                                        FLAGS.overwrite, FLAGS.peft_out)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    sys.exit(f"error: {e}")
  print(f"step {step} of {FLAGS.workdir} -> {FLAGS.out}: {', '.join(files)}")


if __name__ == "__main__":
  app.run(main)
