"""What evaluating or exporting a saved run builds, read from its directory, and nothing else.

  setup = build(read_config(workdir))                 # grader=False: export, no judge at all
  params, step = restore_params(setup, workdir)       # checkpoint `step` (default: the latest)

From the saved config: the policy's structure (ShapeDtypeStructs, nothing allocated), the data
source's held-out prompts and the evaluation grader; then the checkpoint's parameters alone are
read (a partial restore). No optimizer, no reference policy, no warm start, no aggregator or
engine, and the training judge is never asked anything unless evaluation grades with it (no
`eval.judge`). Evaluating a 24M-parameter run holds its parameters alone: 0 bytes of jax
arrays after the build, 92.1 MiB (1.0x the float32 parameters) after the restore, where the
training build held 3.0x after building (AdamW's two moments) and 6.0x while restoring
(`python benchmarks/eval_memory.py`; docs/PERFORMANCE.md section 8).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections

from focal import components, policy, state_init
from focal.iteration import GRPOSettings
from focal.models import lora
from focal.rundir import RunDir


@dataclasses.dataclass
class EvalSetup:
  """What `focal.evaluation` reads of a run (a `components.Setup` has the same fields)."""
  config: ml_collections.ConfigDict
  source: Any                   # held-out prompts, rubrics, criterion names (focal.data)
  graphdef: Any                 # the policy's structure
  params: Any                   # its parameters as ShapeDtypeStructs: the restore's target
  settings: GRPOSettings        # lengths, stop and padding ids of the run's sampling
  eval_grader: Any              # what evaluation grades with (focal.graders.stage); None: export
  base: Any = None              # a LoRA run's frozen base (not in its checkpoints), else None


def build(config, grader: bool = True) -> EvalSetup:
  """The parts of `config`'s run that evaluation uses; `grader=False` builds no grader (export).

  The grader is the grader kind's own for evaluation (a judge's: `eval.judge`'s when that names
  an endpoint), else one like the training grader: only the judge that will grade is asked its
  preflight request."""
  components.check_policy_and_data(config)
  tokens = policy.tokens_for(config)
  source = components.data_source(config, tokens)
  settings = components.settings_for(config, tokens)
  base = None
  if policy.lora_config(config).rank:
    # A LoRA checkpoint holds the adapters alone: the base is the run's loaded (or warm-started,
    # from its cache) policy, built as training built it; still no optimizer and no judge.
    graphdef, full, _ = policy.init_policy(config, source, settings.max_new_tokens,
                                           progress=False)
    graphdef, base, adapters = state_init.attach_adapters(config, graphdef, full)
    params = jax.eval_shape(lambda: adapters)
  else:
    graphdef, params = policy.abstract_policy(config, source, settings.max_new_tokens)
  stage = components.eval_grader(config, source) if grader else None
  return EvalSetup(config, source, graphdef, params, settings, stage, base)


def resolve_step(workdir: str, step: int | None = None) -> int:
  """`step` (default: the latest) if workdir holds its checkpoint; a clear error otherwise."""
  run_dir = RunDir(workdir)
  steps = run_dir.checkpoint_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {run_dir.checkpoint_dir}; "
                            f"train first: python -m experiments.train --workdir={workdir}")
  if step is None:
    return steps[-1]
  if step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} in {workdir}; "
                            f"saved steps: {', '.join(map(str, steps))}")
  return step


def restore_params(setup, workdir: str, step: int | None = None):
  """(params, step) of checkpoint `step` (default: the latest) of the run in `workdir`, read
  onto `setup.params`' shapes (abstract, or a built state's parameters)."""
  step = resolve_step(workdir, step)
  ckpt = RunDir(workdir).checkpointer(keep=None, async_save=False)
  try:
    state, meta = ckpt.restore({"params": setup.params}, step=step)  # a partial restore
  finally:
    ckpt.close()
  return lora.combine(getattr(setup, "base", None), state["params"]), int(meta["step"])


def source_checkpoint(config) -> str | None:
  """The HF checkpoint a run started from (config `model.checkpoint`), or None."""
  return config.model.checkpoint or None


def export_run(workdir: str, out: str, step: int | None = None, dtype: str | None = None,
               overwrite: bool = False, peft_out: str = "") -> tuple[int, list[str]]:
  """(step, files written) of exporting checkpoint `step` (default: the latest) of the run in
  `workdir` as a Hugging Face checkpoint in `out` (focal.models.hf_export): no grader is built,
  so a judged run exports with its judge down. A LoRA run is written with its adapters merged
  (W + (alpha / r) A B); `peft_out` also writes the adapters alone in peft's layout."""
  from flax import nnx
  from focal.models.hf_export import export_checkpoint
  from focal.models.peft_export import export_adapters
  step = resolve_step(workdir, step)  # fails before the build
  config = RunDir(workdir).read_config()
  adapters = policy.lora_config(config)
  if peft_out and not adapters.rank:
    raise ValueError("--peft_out needs a LoRA run (model.lora.rank > 0)")
  setup = build(config, grader=False)
  params, step = restore_params(setup, workdir, step)
  model_config = nnx.merge(setup.graphdef, params).cfg
  source = source_checkpoint(config)
  _, merged = lora.merge_adapters(setup.graphdef, params)
  files = export_checkpoint(out, model_config, merged, source=source, dtype=dtype,
                            overwrite=overwrite)
  if peft_out:
    base_dir = os.path.abspath(os.path.join(peft_out, "base"))
    files += export_adapters(peft_out, model_config, params, adapters, base=source or base_dir,
                             overwrite=overwrite)
    if source is None:  # the warm-started base exists nowhere else
      _, base = lora.merge_adapters(setup.graphdef, lora.adapters_off(params))
      export_checkpoint(base_dir, model_config, base, dtype=dtype)
  return step, files
