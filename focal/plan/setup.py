"""A run's setup from its config alone: the policy's shapes from `config.json` (no weights, no
tokenizer), the state as ShapeDtypeStructs, and a batch of zeros of the run's shapes.

It goes through the same `focal.components` functions as `components.build` (settings, engine,
initial state), so the programs compiled from it are the loop's own.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from focal import components, policy, state_init
from focal.batch import PromptBatch
from focal.models import scales
from focal.models.hf_import import CONFIG_FILE, read_config
from focal.models.transformer import abstract_model
from focal.rubric import RubricBatch


class ShapeSource:
  """What the loop's placement reads of a data source: batches of the run's shapes (zeros)."""

  def __init__(self, batch_size: int, width: int, features: int, max_criteria: int,
               num_prompts: int):
    self.batch_size, self.width = batch_size, width
    self.features, self.max_criteria, self.num_prompts = features, max_criteria, num_prompts

  def batch(self, step: int):
    del step
    b, k = self.batch_size, self.max_criteria
    mask = np.ones((b, self.width), bool)
    rubric = RubricBatch(np.ones((b, k), np.float32), np.zeros((b, k), np.int32),
                         np.zeros((b, k), bool), np.ones((b, k), bool),
                         np.arange(b, dtype=np.int32))
    batch = PromptBatch(np.zeros((b, self.width), np.int32), mask,
                        np.zeros((b, self.features), np.int32), rubric)
    return batch, np.arange(b)


class HostGraderShape:
  """A judge or rules grader as the placement sees it: not in the jitted step."""
  fused = False


def _stop_ids(directory: str):
  with open(os.path.join(directory, CONFIG_FILE)) as f:
    eos = json.load(f).get("eos_token_id", 0)
  return tuple(eos) if isinstance(eos, list) and len(eos) > 1 else (
      eos[0] if isinstance(eos, list) else eos)


def abstract_setup(config, num_prompts: int, max_criteria: int) -> components.Setup:
  """The run's Setup with an abstract state: from `model.checkpoint`'s config.json only (a
  scale: its config), prompts as wide as `data.max_prompt_tokens` (the synthetic suite: its
  own prompts' width), `num_prompts` x `max_criteria` of aggregator state."""
  m = policy.model_fields(config)
  d = components.data_fields(config)
  max_new = config.grpo.max_new_tokens
  if m["checkpoint"]:
    model_cfg = read_config(m["checkpoint"], dtype=m["dtype"], param_dtype=m["param_dtype"],
                            **policy.compute_fields(config))
    source = ShapeSource(d.prompts_per_step, d.max_prompt_tokens, 1,
                         d.get("max_criteria") or max_criteria, num_prompts)
    grader, eos = HostGraderShape(), _stop_ids(m["checkpoint"])
    if d.max_prompt_tokens + max_new > model_cfg.max_seq_len:
      raise ValueError(f"data.max_prompt_tokens={d.max_prompt_tokens} + grpo.max_new_tokens="
                       f"{max_new} exceed the checkpoint's context of {model_cfg.max_seq_len}")
  else:
    source = components.data_source(config, policy.byte_tokens())
    model_cfg = scales.get_scale(m["scale"], max_seq_len=source.width + max_new,
                                 dtype=m["dtype"], param_dtype=m["param_dtype"],
                                 **policy.compute_fields(config))
    grader, eos = components.make_grader(config, source), scales.EOS_ID
  settings = components.grpo_settings(config, eos, pad_id=0)
  graphdef, params = abstract_model(model_cfg)
  graphdef, base, params = state_init.attach_adapters(config, graphdef, params)
  tx, aggregator, engine = components.run_engine(config, graphdef, settings, grader)
  state = jax.eval_shape(lambda p, b: state_init.initial_state(
      config, settings, p, tx, aggregator, source.num_prompts, source.max_criteria, b),
      params, base)
  return components.Setup(config, source, graphdef, engine, state, settings,
                          np.zeros((0,), np.float32), grader, grader)
