r"""Exports a run's policy as a Hugging Face checkpoint (config, safetensors, tokenizer files).

  python -m experiments.export --workdir=DIR --out=HF_DIR            # latest checkpoint
  python -m experiments.export --workdir=DIR --out=HF_DIR --step=100 --dtype=bfloat16

The run's saved config rebuilds the policy, its checkpoint's parameters are restored, and
`focal.models.hf_export.export_checkpoint` writes them: a byte-vocabulary policy with a byte-level
tokenizer.json and a chat template that renders a user prompt as BOS + its bytes (what training
fed it); a policy trained from an HF checkpoint (config `model.checkpoint`) with that
checkpoint's tokenizer files. A LoRA run (`model.lora.rank` > 0) is written with its adapters
merged into the kernels (W + (alpha / r) A B): a standard checkpoint of the trained policy.
`AutoModelForCausalLM.from_pretrained(HF_DIR)` then loads it. `--peft_out=DIR` also writes the
adapters alone in peft's layout (focal.models.peft_export), on the run's `model.checkpoint`, or
for a scale's warm-started base on its export, written to DIR/base.
"""
import os
import sys

from absl import app, flags, logging
from flax import nnx

from focal import evaluation, policy
from focal.models import lora
from focal.models.hf_export import export_checkpoint
from focal.models.peft_export import export_adapters

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


def source_checkpoint(config) -> str | None:
  """The HF checkpoint a run started from (config `model.checkpoint`), or None."""
  model = config.get("model")
  return (model.get("checkpoint") or None) if hasattr(model, "get") else None


def export_run(workdir: str, out: str, step: int | None = None, dtype: str | None = None,
               overwrite: bool = False, peft_out: str = "") -> tuple[int, list[str]]:
  """(step, files written) of exporting checkpoint `step` (default: the latest) of `workdir`."""
  step = evaluation.resolve_step(workdir, step)  # fails before the build
  config = evaluation.load_config(workdir)
  adapters = policy.lora_config(config)
  if peft_out and not adapters.rank:
    raise ValueError("--peft_out needs a LoRA run (model.lora.rank > 0)")
  setup = evaluation.build_for_eval(config)
  params, step = evaluation.restore_params(setup, workdir, step)
  model_config = nnx.merge(setup.graphdef, params).cfg
  source = source_checkpoint(config)
  _, merged = lora.merge_adapters(setup.graphdef, params)  # W + (alpha / r) A B
  files = export_checkpoint(out, model_config, merged, source=source, dtype=dtype,
                            overwrite=overwrite)
  if peft_out:
    base_dir = os.path.abspath(os.path.join(peft_out, "base"))
    files += export_adapters(peft_out, model_config, params, adapters,
                             base=source or base_dir, overwrite=overwrite)
    if source is None:  # the warm-started base exists nowhere else
      _, base = lora.merge_adapters(setup.graphdef, lora.adapters_off(params))
      export_checkpoint(base_dir, model_config, base, dtype=dtype)
  return step, files


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  try:
    step, files = export_run(FLAGS.workdir, FLAGS.out, FLAGS.step, FLAGS.dtype, FLAGS.overwrite,
                             FLAGS.peft_out)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    sys.exit(f"error: {e}")
  print(f"step {step} of {FLAGS.workdir} -> {FLAGS.out}: {', '.join(files)}")


if __name__ == "__main__":
  app.run(main)
