"""Held-out evaluation (METHODS §7), during training and of a saved checkpoint.

  row = evaluate_checkpoint("runs/default")          # latest checkpoint, the run's own config
  print(format_report(row))

Rows are keyed like the loop's eval rows: `step`, `eval/<metric>` for greedy
responses and `eval_sampled/<metric>` for `eval.num_samples` sampled ones per
prompt. Evaluation draws from the run's evaluation RNG folded with the step, so
re-evaluating a checkpoint the loop evaluated reproduces the logged numbers.

A judged evaluation whose share of invalid verdicts exceeds `eval.judge.max_invalid_frac`
raises `TooManyInvalid` (errors by kind) instead of returning a row: a broken judge is never
reported as a score of 0.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from focal import components, eval_build, sampling
from focal.decode_plan import draw_uniforms
from focal.eval_build import resolve_step, restore_params  # noqa: F401  (public)
from focal.host_step import TooManyInvalid
from focal.metrics import evaluation as metrics_lib
from focal.report.tables import SUMMARY, format_report  # noqa: F401  (the CLI's report)
from focal.rundir import read_config
from focal.metrics.rows import named_means

load_config = read_config  # a run's saved config: its directory or its config.json
Setup = components.Setup | eval_build.EvalSetup  # what evaluation reads: the loop's or a saved run's


def eval_key(config) -> jax.Array:
  """The evaluation RNG of a run; re-evaluating a checkpoint with it reproduces the logged row."""
  return jax.random.key(config.seed + 2)


def sample_rows(graphdef, params, tokens, mask, rng, rows_per_call: int = 0, **kw):
  """`sampling.sample` over N held-out rows, `rows_per_call` at a time (0: all at once), as
  the training rollouts are (grpo.rollout_micro_batch_size): 500 prompts x 5 samples would
  hold one KV cache for all of them. Each row draws from its column of one draw of uniforms,
  so the tokens do not depend on the chunking; on a mesh (sharded params) each chunk's rows
  are split over the batch axes like a step's. Returns the SampleOutput as numpy arrays."""
  n = tokens.shape[0]
  if not rows_per_call or rows_per_call >= n:
    return jax.device_get(sampling.sample(graphdef, params, tokens, mask, rng, **kw))
  uniforms = np.asarray(draw_uniforms(rng, kw["max_new_tokens"], n))
  rows_sh, cols_sh = row_shardings(params, rows_per_call)
  outs = []
  for start in range(0, n, rows_per_call):
    idx = np.arange(start, start + rows_per_call) % n  # the last call is padded, then cut
    put = lambda x, sh: x if sh is None else jax.device_put(x, sh)
    outs.append(jax.device_get(sampling.sample(
        graphdef, params, put(tokens[idx], rows_sh), put(mask[idx], rows_sh), rng,
        uniforms=put(uniforms[:, idx], cols_sh), **kw)))
  return sampling.SampleOutput(*(np.concatenate(parts)[:n] for parts in zip(*outs)))


def row_shardings(params, rows: int):
  """(rows over the batch axes, [L, rows] columns likewise) on params' mesh, or (None, None)."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  from focal import sharding
  sh = getattr(jax.tree.leaves(params)[0], "sharding", None)
  if not isinstance(sh, NamedSharding) or rows % sharding.batch_size_multiple(sh.mesh):
    return None, None
  return sharding.batch_dim_sharding(sh.mesh), NamedSharding(sh.mesh, P(None, sharding.BATCH_AXES))


def evaluate(setup: Setup, params, rng, *, greedy: bool, num_samples: int = 1,
             temperature: float = 1.0, step: int = 0) -> dict:
  """METHODS §7 metrics of responses to the held-out prompts (flat, unprefixed keys).

  Verdicts are asked in the criteria's original sense (pitfall_mode "signed"), so a
  HealthBench run's `healthbench_score` is the official one. `step` names the evaluation in
  the error of a judge past `eval.judge.max_invalid_frac`."""
  source = setup.source
  tokens, mask = source.eval_prompts
  g = 1 if greedy else num_samples
  rep = lambda a: np.repeat(np.asarray(a), g, axis=0)
  out = sample_rows(setup.graphdef, params, rep(tokens), rep(mask), rng,
                    setup.settings.rollout_micro_batch_size,
                    max_new_tokens=setup.settings.max_new_tokens, temperature=temperature,
                    eos_id=setup.settings.eos_id, pad_id=setup.settings.pad_id, greedy=greedy)
  n = source.size("eval")
  scores, valid, stats = setup.eval_grader.score("eval", range(n), out.tokens, out.mask, g,
                                                 pitfall_mode="signed")
  m = jax.device_get(metrics_lib.compute_metrics(jnp.asarray(scores), jnp.asarray(valid),
                                                 source.eval_rubric,
                                                 num_categories=len(source.categories)))
  row = {
      "mean_rubric_reward": float(m["mean_reward_pct"]),
      "strict_completion": float(m["strict_completion"]),
      "worst_category": float(m["worst_category_pass_rate"]),
      "best_category": float(m["best_category_pass_rate"]),
      "polarization": float(m["polarization"]),
      "saturated_share": float(m["saturated_share"]),
      "dead_share": float(m["dead_share"]),
      "zero_signal_pressure": float(m["zero_signal_pressure"]),
      "response_length": float(np.mean(np.sum(np.asarray(out.mask), -1))),
  }
  for c, name in enumerate(source.categories):
    if m["category_count"][c] > 0:
      row[f"category/{name}"] = float(m["category_pass_rate"][c])
  for name, value in named_means(np.asarray(m["criterion_pass_rate"]), source.eval_names).items():
    row[f"criterion/{name}"] = value
  if not setup.eval_grader.fused:
    row["invalid_verdict_frac"] = check_invalid(setup, valid, stats, g, step)
  if getattr(source, "kind", "") == "healthbench":
    hb = jax.device_get(metrics_lib.healthbench_score(jnp.asarray(scores), jnp.asarray(valid),
                                                      source.eval_rubric))
    row["healthbench_score"] = float(hb["healthbench_score"])
    row["healthbench_score_unclipped"] = float(hb["healthbench_score_unclipped"])
  return row


def check_invalid(setup: Setup, valid, stats: dict, group: int, step: int) -> float:
  """The share of invalid verdicts on real criteria; TooManyInvalid past the evaluation's own
  limit, `eval.judge.max_invalid_frac` (whichever judge evaluates)."""
  mask = np.asarray(setup.source.eval_rubric.mask)
  frac = float(1.0 - np.sum(np.asarray(valid) & mask[:, None, :]) / max(1, np.sum(mask) * group))
  limit = float(setup.config.eval.judge.max_invalid_frac)
  if frac > limit:
    raise TooManyInvalid(step, frac, limit, stats, what="eval.judge.max_invalid_frac",
                         then="The evaluation wrote no row (a broken judge is no score)")
  return frac


def evaluate_both(setup: Setup, params, rng, step: int) -> dict:
  """Greedy (`eval/...`) and sampled (`eval_sampled/...`) held-out metrics."""
  c = setup.config.eval
  rng = jax.random.fold_in(rng, step)
  row = {f"eval/{k}": v for k, v in evaluate(setup, params, rng, greedy=True, step=step).items()}
  sampled = evaluate(setup, params, rng, greedy=False, num_samples=c.num_samples,
                     temperature=c.temperature, step=step)
  row.update({f"eval_sampled/{k}": v for k, v in sampled.items()})
  return row


def build_for_eval(config, progress: bool = False) -> eval_build.EvalSetup:
  """What evaluating `config`'s saved run needs (focal.eval_build): its policy's structure,
  held-out prompts and evaluation grader; no optimizer, reference, warm start or training judge.
  `progress` is accepted for callers of the full build, which had a warm start to show."""
  del progress
  return eval_build.build(config)


def evaluate_checkpoint(workdir: str, config=None, step: int | None = None,
                        progress: bool = False) -> dict:
  """Greedy and sampled held-out metrics of a checkpoint, keyed like the loop's eval rows.

  `config` defaults to the one the run saved in `workdir`. Builds what evaluation reads and
  restores the parameters alone (focal.eval_build): a judged run's training judge is not asked
  anything unless it is also the one that evaluates (no `eval.judge`). `progress` is kept for
  callers of the training build it replaced; nothing slow is built now (no warm start).
  """
  step = resolve_step(workdir, step)  # fails before the build
  if config is None:
    config = load_config(workdir)
  setup = build_for_eval(config, progress)
  params, step = restore_params(setup, workdir, step)
  return {"step": step, **evaluate_both(setup, params, eval_key(config), step)}


def write_json(row: dict, path: str) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, "w") as f:
    json.dump(row, f, indent=2, sort_keys=True)
