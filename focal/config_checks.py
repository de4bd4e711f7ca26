"""The checks of a run config that need no component built: the schedule, the batch against
the GRPO settings and the mesh, the precision of the trained weights (`focal.components.validate`
runs them), and the batch against the data source once that is built."""
from __future__ import annotations

import warnings

import jax
import numpy as np

from focal import policy, sharding


def check_schedule(config) -> None:
  for field in ("total_steps", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints"):
    if not isinstance(config[field], int) or config[field] < 1:
      raise ValueError(f"config.{field} must be an integer >= 1, got {config[field]!r}"
                       + (" (0 would keep no checkpoint: a resume would lose the run)"
                          if field == "keep_checkpoints" else ""))
  steps = config.warm_start.steps
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
    raise ValueError(f"config.warm_start.steps must be an integer >= 0 (0 = no warm start), "
                     f"got {steps!r}")
  e = config.eval
  if e.num_samples < 1 or not e.temperature > 0:
    raise ValueError(f"config.eval needs num_samples >= 1 and temperature > 0, got "
                     f"{e.num_samples} and {e.temperature}")



def check_precision(config) -> None:
  """bfloat16 parameters lose small updates: a weight w moves only by steps of at least about
  |w| 2^-9, and an AdamW step is about the learning rate. At lr 1e-6, 2% of N(0, 0.02) weights
  move at all (88% at 1e-4); the optimizer's own sums are float32 either way."""
  lr = config.optimizer.learning_rate
  lora = policy.lora_config(config)
  if lora.rank and not lora.train_embeddings:
    return  # only the adapters train, and they are float32 whatever model.param_dtype says
  if (policy.model_fields(config)["param_dtype"] == "bfloat16" and isinstance(lr, float)
      and lr < 1e-4):
    warnings.warn(f"model.param_dtype=bfloat16 with optimizer.learning_rate={lr:g}: most "
                  "updates round away in bfloat16 weights (2% of N(0, 0.02) weights move at "
                  "1e-6); keep param_dtype=float32 to train, or raise the learning rate",
                  stacklevel=3)


def check_batch(config, settings) -> None:
  """The GRPO settings (`settings`, read with no token ids), and every batch dimension against
  the mesh, before anything is built."""
  b = config.data.prompts_per_step
  if b < 1:
    raise ValueError(f"config.data.prompts_per_step must be >= 1, got {b}")
  n = b * settings.group_size
  if n % settings.num_minibatches:
    raise ValueError(f"grpo.num_minibatches={settings.num_minibatches} does not divide the "
                     f"{n} rollouts of a step (data.prompts_per_step x grpo.group_size)")
  mini = n // settings.num_minibatches
  for field, size, whole, of in (
      ("micro_batch_size", settings.micro_batch_size, mini, "a mini-batch"),
      ("rollout_micro_batch_size", settings.rollout_micro_batch_size, n, "a step")):
    if size and whole % size:
      raise ValueError(f"grpo.{field}={size} does not divide the {whole} rollouts of {of}")
  shape = tuple(int(s) for s in config.mesh.shape)
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f"config.mesh.shape must be three sizes >= 1 (data, fsdp, tensor), got "
                     f"{shape}")
  kind = config.mesh.ref_memory_kind
  if kind not in sharding.REF_MEMORY_KINDS:
    raise ValueError(f"config.mesh.ref_memory_kind must be one of {sharding.REF_MEMORY_KINDS}, "
                     f"got {kind!r}")
  n_dev, found = int(np.prod(shape)), jax.device_count()
  if n_dev > found or (n_dev < found and jax.process_count() > 1):
    raise ValueError(f"config.mesh.shape={shape} needs {n_dev} devices, found {found}"
                     + (" (a multi-process run uses every device)" if n_dev < found else ""))
  if n_dev < found:  # e.g. the default (1,1,1) on an 8-chip TPU: runs, on the first chip
    warnings.warn(f"config.mesh.shape={shape} uses {n_dev} of the {found} devices; set "
                  f"--config.mesh.shape to use them all (docs/SCALING.md)", stacklevel=2)
  rows = shape[0] * shape[1]
  if b % rows:
    raise ValueError(f"config.data.prompts_per_step={b} is not a multiple of the mesh's "
                     f"data x fsdp = {shape[0]} x {shape[1]} = {rows} (each device group takes "
                     f"whole prompts); use a multiple of {rows}")


def check_batch_fits(config, source) -> None:
  """A step draws prompts_per_step distinct prompts: no more than the training set holds."""
  b, n = config.data.prompts_per_step, source.size("train")
  if b > n:
    where = config.data.path or f"the synthetic task {config.task!r}"
    raise ValueError(f"config.data.prompts_per_step={b} is larger than the training set ({n} "
                     f"prompts in {where}): a step would repeat prompts within its batch; use "
                     f"at most {n}, or more training prompts")
