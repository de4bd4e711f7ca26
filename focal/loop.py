"""The training loop: config in, a trained, evaluated, checkpointed run out.

`run(config, workdir)` trains one run; `run_group(configs, workdirs)` trains runs
that differ only in their seed as ONE vmapped program (a leading seed axis on
state and batch), each seed keeping its own prompts, warm start, run directory,
metrics and checkpoints exactly as `run` would write them. Both go through the
same loop; a single run is never vmapped, so its numbers do not depend on
whether it could have been grouped. A run resumes from the latest checkpoint in
its directory (see `focal.rundir` for the files), after checking that its config, data and log
still match (`focal.resume`). SIGTERM or SIGINT stops it after the step in progress, with a
checkpoint of that step (`focal.preemption`: `Preempted`, exit status 75).

Metric keys (stable; scripts rely on them):
  step
  train/reward_mean            the exact scalar the aggregator fed to GRPO, mean over rollouts
  train/reward_std, train/zero_variance_groups (the estimator's count of zeroed groups),
  train/loss, train/kl, train/grad_norm, train/clip_frac, train/response_length,
  train/invalid_verdict_frac
  train/seconds                wall seconds of the training loop so far, summed across
                               restarts: the warm start and step-0 evaluation excluded,
                               the first step's compilation and later evaluations included
  train/clipped_ratio          share of rollouts cut at grpo.max_new_tokens without a stop token
  train/entropy                mean entropy (nats) of the policy over the rollouts' tokens, from
                               the loss's own forward, averaged over the mu x mini-batch updates
  train/learning_rate          the optimizer's learning rate this step (constant so far)
  train/tokens_seen            response tokens sampled since step 0, summed across restarts
  train/pass_rate/<task>/<criterion>   raw per-criterion pass rate this step
  train/weight/<task>/<criterion>      aggregator weight (abs-normalised per prompt)
  train/factor/<task>/<criterion>      POW3R factors (pow3r, pow3r_focal)
  eval/<metric>          greedy responses to held-out prompts: mean_rubric_reward (%),
                         strict_completion, worst_category, best_category, polarization,
                         saturated_share, dead_share, zero_signal_pressure,
                         category/<task>/<category>, criterion/<task>/<criterion>
  eval_sampled/<metric>  the same for `eval.num_samples` sampled responses per prompt

TRL GRPOTrainer names (focal.tracking.TRL_ALIASES), written to TensorBoard and W&B only, under
`train/` as transformers writes TRL's; metrics.jsonl keeps one name per value:
  train/completions/mean_length           = train/response_length
  train/completions/clipped_ratio         = train/clipped_ratio
  train/frac_reward_zero_std              = train/zero_variance_groups
  train/clip_ratio, train/clip_ratio/region_mean = train/clip_frac
  train/reward                            = train/reward_mean
  train/kl, train/entropy, train/learning_rate: already TRL's names, written once
"""
from __future__ import annotations

import copy
import time
from typing import Sequence

import jax
import ml_collections
from tqdm.auto import tqdm

from focal import components, policy, sharding
from focal.data.synthetic_source import prompt_sets, prompt_width
from focal.host_step import TooManyInvalid
from focal.iteration import policy_params
from focal.preemption import Preempted, StopRequest
from focal.recorder import Recorder
from focal.replicas import make_replicas
from focal.rundir import RunDir

# Wall clock of the training loop's train/seconds (a module attribute, so a test can swap it).
_clock = time.time


def run(config: ml_collections.ConfigDict, workdir: str, progress: bool = True,
        **resume_options) -> dict:
  """Trains (resuming from `workdir` if it holds checkpoints) and returns the final eval row.
  `resume_options`: allow_data_change, allow_missing_rows (see `run_group`)."""
  return run_group([config], [workdir], progress, **resume_options)[0]


def seed_configs(config, seeds: Sequence[int]) -> list:
  """Copies of `config`, one per seed."""
  out = []
  for seed in seeds:
    c = copy.deepcopy(config)
    c.seed = seed
    out.append(c)
  return out


def check_group(configs: Sequence) -> None:
  """Runs of one group may differ in their seed only (they share one compiled step)."""
  strip = lambda c: {k: v for k, v in c.to_dict().items() if k != "seed"}
  first = strip(configs[0])
  for c in configs[1:]:
    other = strip(c)
    diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
    if diff:
      raise ValueError(f"runs trained as one group may differ only in seed; these differ in "
                       f"{', '.join(diff)}")


def run_group(configs: Sequence, workdirs: Sequence[str], progress: bool = True,
              allow_data_change: bool = False, allow_missing_rows: bool = False) -> list[dict]:
  """Trains one run per config (configs differing only in seed) in one loop; returns each
  run's final eval row. Runs whose checkpoints are at different steps train one by one.

  Everything that can be checked is checked before anything is built or any run directory
  touched: the configs (`components.validate`), and each directory's saved config, data
  hashes and log against the new run (`RunDir.check_resume`; `allow_data_change` and
  `allow_missing_rows` let a resume go on over changed data or lost rows, recorded). Each
  directory is then locked, before the (slow) build, while it trains. Raises `Preempted`
  after checkpointing when SIGTERM or SIGINT stops the run."""
  configs, workdirs = list(configs), list(workdirs)
  if len(configs) != len(workdirs) or not configs:
    raise ValueError(f"need one workdir per config, got {len(configs)} configs and "
                     f"{len(workdirs)} workdirs")
  check_group(configs)
  for c in configs:
    components.validate(c)
  run_dirs = [RunDir(w) for w in workdirs]
  changes = [d.check_resume(c, allow_data_change, allow_missing_rows)
             for c, d in zip(configs, run_dirs)]
  options = dict(allow_data_change=allow_data_change, allow_missing_rows=allow_missing_rows)
  locked = []
  try:
    if jax.process_index() == 0:  # one writer per run directory
      for d in run_dirs:
        d.acquire_lock()
        locked.append(d)
    with StopRequest() as stop:
      mesh = sharding.make_mesh(tuple(configs[0].mesh.shape)) if len(configs) == 1 else None
      setups = [components.build(c, progress=progress, width=_stacked_width(configs), mesh=mesh)
                for c in configs]
      return _train(configs, setups, run_dirs, changes, mesh, progress, locked, stop, options)
  finally:
    for d in locked:
      d.release_lock()


def _train(configs, setups, run_dirs, changes, mesh, progress, locked, stop, options
           ) -> list[dict]:
  replicas = make_replicas(configs[0], setups, mesh)
  recorders = [Recorder(c, s, d, ch) for c, s, d, ch in zip(configs, setups, run_dirs, changes)]
  states = [rec.restore(replicas.restore_target(s.state)) for rec, s in zip(recorders, setups)]
  for rec in recorders:  # only now: a refused or failed restore leaves the old config.json
    if jax.process_index() == 0:  # one writer per run directory
      rec.run_dir.write_config(rec.config, replicas.mesh_shape, rec.data_changes)
  starts = {int(s.step) for s in states}
  if len(starts) > 1:
    for rec in recorders:
      rec.close()
    for d in locked:
      d.release_lock()
    return [run(c, d.path, progress, **options) for c, d in zip(configs, run_dirs)]
  state = replicas.combine(states)
  try:
    state = _loop(configs[0], replicas, recorders, state, starts.pop(), progress, stop)
  except BaseException:
    for rec in recorders:  # let async saves finish: the last good checkpoint stays intact
      rec.close(final=False)
    raise
  return [rec.close() for rec in recorders]


def _loop(config, replicas, recorders, state, start: int, progress: bool, stop: StopRequest):
  if start == 0:
    for i, rec in enumerate(recorders):
      rec.begin(policy_params(replicas.take(state, i)))
  n = len(recorders)
  desc = f"train {_label(config)}" + (f" x{n} seeds" if n > 1 else "")
  bar = tqdm(range(start, config.total_steps), desc=desc, initial=start,
             total=config.total_steps, disable=not progress)
  t0 = _clock()

  def save_all(step):  # the state as it is now, unless that step is saved already
    for i, rec in enumerate(recorders):
      rec.save(step, replicas.take(state, i), _clock() - t0)

  for step in bar:
    if stop.agreed():  # every process, at every step boundary: they stop after the same step
      save_all(step)
      raise Preempted(step, stop.signame, [rec.run_dir.path for rec in recorders])
    try:
      state, m, idxs = replicas.step(state, step, last=step + 1 == config.total_steps)
    except TooManyInvalid:
      save_all(step)  # nothing was updated: keep the state the failed step started from
      raise
    seconds = _clock() - t0
    rows = [rec.after_step(step + 1, replicas.take(m, i), idxs[i], seconds,
                           lambda i=i: replicas.take(state, i))
            for i, rec in enumerate(recorders)]
    if rows[0] is not None and "train/reward_mean" in rows[0]:
      bar.set_postfix(reward=f"{rows[0]['train/reward_mean']:.3f}")
  return state


def _stacked_width(configs) -> int | None:
  """Stacked runs share shapes: every seed's prompts padded to the widest (synthetic only)."""
  if len(configs) == 1:
    return None
  if components.data_fields(configs[0]).source != "synthetic":
    raise ValueError("seeds are vmapped only on the synthetic suite; train other data one "
                     "seed at a time (vmap_seeds=False)")
  return max(prompt_width(*prompt_sets(c.task, c.data.train_prompts_per_task,
                                       c.data.eval_prompts_per_task, c.seed)[1:])
             for c in configs)


def _label(config) -> str:
  """What a progress bar trains, e.g. 'keywords/base focal': a sweep runs many of them."""
  return f"{config.task}/{policy.model_name(config)} {config.aggregator.name}"
