"""The assets of configs/judge_demo.py: the papers' setting in miniature, built on this CPU.

  checkpoint   the tiny byte-level scale, warm-started on the synthetic suite (the built-in
               default's warm start), written as a Hugging Face checkpoint the way a user would
               write one (focal.models.hf_export: config.json, model.safetensors, a byte-level
               tokenizer.json and a chat template that renders a prompt as BOS + its bytes)
  train/eval   RaR-shaped JSONL files of the suite's prompts and rubrics: the question is the
               prompt's text; each criterion is `<Label> Criteria: <task>/<criterion>: ...`
               (Essential for required criteria, Pitfall for negative weights, Important for
               weight >= 3, else Optional), which the rule judge server
               (`python -m focal.graders.rule_server`) reads back to grade with the task's rules

Built once under `cache_root()` by an explicit command (`python -m experiments.demo_assets
--config=configs/judge_demo.py`, which calls `prepare`), never by reading a config:
`asset_paths` only says where they go.
"""
from __future__ import annotations

import json
import os

from focal.tasks import texts


def _label(weight: float, required: bool) -> str:
  if weight < 0:
    return "Pitfall"
  if required:
    return "Essential"
  return "Important" if weight >= 3 else "Optional"


def write_rar(path: str, suite, prompts) -> None:
  """RaR records of a suite PromptSet (criteria texts from focal.tasks.texts)."""
  questions = texts.prompt_texts(prompts)
  criteria = texts.judge_criteria(suite, prompts)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for i, question in enumerate(questions):
      rubric = [{"title": c["text"].split(":", 1)[0],
                 "description": f"{_label(c['weight'], c['required'])} Criteria: {c['text']}",
                 "weight": int(c["weight"]) if float(c["weight"]).is_integer() else c["weight"]}
                for k, c in enumerate(criteria[i]) if prompts.mask[i, k]]
      f.write(json.dumps({"question": question, "reference_answer": "",
                          "question_source": "focal.tasks", "rubric": rubric}) + "\n")
  os.replace(tmp, path)


def cache_root() -> str:
  """Where the demo's assets live: $FOCAL_DEMO_CACHE, or ~/.cache/focal/judge_demo."""
  return os.path.expanduser(os.environ.get("FOCAL_DEMO_CACHE", "~/.cache/focal/judge_demo"))


def asset_paths(synthetic_config, cache_dir: str | None = None) -> tuple[str, str, str]:
  """(checkpoint dir, train JSONL, eval JSONL) that `prepare` writes for `synthetic_config`
  (a configs/base.py config), under `cache_dir` (default `cache_root()`); nothing is built."""
  c = synthetic_config
  root = os.path.join(os.path.expanduser(cache_dir or cache_root()),
                      f"{c.task}-{c.model.scale}-seed{c.seed}-n{c.data.train_prompts_per_task}")
  return (os.path.join(root, "checkpoint"), os.path.join(root, "rar_train.jsonl"),
          os.path.join(root, "rar_eval.jsonl"))


def built(paths) -> bool:
  checkpoint, train, evals = paths
  return all(os.path.exists(p) for p in (os.path.join(checkpoint, "config.json"), train, evals))


def prepare(synthetic_config, cache_dir: str | None = None,
            progress: bool = True) -> tuple[str, str, str]:
  """Builds the assets of `synthetic_config` at `asset_paths` unless they are there already:
  its warm-started policy (trained the way any run is, cached like any run's warm start) as a
  Hugging Face checkpoint, and its training and held-out prompts as RaR files."""
  checkpoint, train, evals = paths = asset_paths(synthetic_config, cache_dir)
  if built(paths):
    return paths
  from flax import nnx
  from focal import components
  from focal.models.hf_export import export_checkpoint
  setup = components.build(synthetic_config, progress=progress)
  os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
  source = setup.source
  write_rar(train, source.suite, source.train_set)
  write_rar(evals, source.suite, source.eval_set)
  from focal.iteration import policy_params
  from focal.models.lora import merge_adapters
  model_config = nnx.merge(setup.graphdef, setup.state.params).cfg
  _, params = merge_adapters(setup.graphdef, policy_params(setup.state))
  export_checkpoint(checkpoint, model_config, params, overwrite=True)
  return paths
