"""The training driver: config in, a trained, evaluated, checkpointed run out.

`run(config, workdir)` builds the task suite, the policy (warm-started on
reference responses), the aggregator and the jitted GRPO step from a config,
then loops with a progress bar. It writes

  workdir/metrics.jsonl   one JSON object per logged step (keys below)
  workdir/tb/             TensorBoard event files (tensorboardX, no TensorFlow)
  workdir/checkpoints/    orbax checkpoints of the whole train state
  workdir/config.json     the resolved config

and resumes from the latest checkpoint in `workdir` when there is one. Batches
are a pure function of (seed, step), so the data position is the step itself.

Metric keys (stable; scripts rely on them):
  step
  train/reward_mean            the exact scalar the aggregator fed to GRPO, mean over rollouts
  train/reward_std, train/zero_variance_groups, train/loss, train/kl, train/grad_norm,
  train/clip_frac, train/response_length, train/invalid_verdict_frac
  train/seconds                wall seconds of the training loop so far, summed across
                               restarts: the warm start and step-0 evaluation excluded,
                               the first step's compilation and later evaluations included
  train/pass_rate/<task>/<criterion>   raw per-criterion pass rate this step
  train/weight/<task>/<criterion>      aggregator weight (abs-normalised per prompt)
  train/factor/<task>/<criterion>      POW3R factors (pow3r, pow3r_focal)
  eval/<metric>          greedy responses to held-out prompts: mean_rubric_reward (%),
                         strict_completion, worst_category, best_category, polarization,
                         saturated_share, dead_share, zero_signal_pressure,
                         category/<task>/<category>, criterion/<task>/<criterion>
  eval_sampled/<metric>  the same for `eval.num_samples` sampled responses per prompt
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from focal import aggregators, distributed, metrics as metrics_lib, sampling, sharding, tasks
from focal.advantages import registered_estimators
from focal.checkpoint import Checkpointer
from focal.models.scales import get_scale
from focal.models.transformer import init_model
from focal.train import GRPOSettings, PromptBatch, init_train_state, make_engine, make_optimizer
from focal.warm_start import cache_file, fingerprint, make_reference_sequences, supervised_warm_start

# Wall clock of the training loop's train/seconds (a module attribute, so a test can swap it).
_clock = time.time


@dataclasses.dataclass
class Setup:
  """Everything a run builds from its config before the first step."""
  config: ml_collections.ConfigDict
  suite: Any
  train_set: Any
  eval_set: Any
  train_prompts: tuple       # (tokens [N, P], mask [N, P]) host arrays
  eval_prompts: tuple
  graphdef: Any
  engine: Any
  state: Any
  settings: GRPOSettings
  criterion_names: np.ndarray   # [num_train, K] '<task>/<criterion>' per slot ('' on padding)
  warm_start_losses: np.ndarray
  train_rubric: Any = None      # RubricBatch of all training prompts, validated once


def aggregator_from_config(config) -> aggregators.Aggregator:
  """The aggregator named by `config.aggregator.name` with its block's hyper-parameters."""
  name = config.aggregator.name
  if name not in aggregators.registered():
    raise ValueError(f"unknown aggregator {name!r} (config.aggregator.name); "
                     f"registered: {', '.join(aggregators.registered())}")
  block = config.aggregator.get(name)
  hparams = {} if block is None else dict(block.to_dict())
  return aggregators.make(name, **hparams)


def validate(config) -> None:
  """Fails fast, naming the field and the valid choices."""
  aggregator_from_config(config)
  if config.task != "suite" and config.task not in tasks.names():
    raise ValueError(f"unknown task {config.task!r} (config.task); choose 'suite' or one of "
                     f"{', '.join(tasks.names())}")
  get_scale(config.model)
  if config.advantage.name not in registered_estimators():
    raise ValueError(f"unknown advantage estimator {config.advantage.name!r} "
                     f"(config.advantage.name); registered: {', '.join(registered_estimators())}")
  n_dev = int(np.prod(config.mesh.shape))
  if n_dev != jax.device_count():
    raise ValueError(f"config.mesh.shape={tuple(config.mesh.shape)} needs {n_dev} devices, "
                     f"found {jax.device_count()}")
  for field in ("total_steps", "eval_every", "log_every", "checkpoint_every"):
    if config[field] < 1:
      raise ValueError(f"config.{field} must be >= 1, got {config[field]}")


def encode_prompts(prompt_set, width: int | None = None):
  """BOS + prompt bytes, left-padded: (tokens [N, P] int32, mask [N, P] bool)."""
  seqs = [[tasks.BOS] + list(t) for t in prompt_set.tokens]
  return sampling.left_pad(seqs, pad_id=tasks.PAD, width=width)


def prompt_sets(config):
  """(suite, train PromptSet, eval PromptSet) of a config."""
  suite = tasks.make_suite(None if config.task == "suite" else [config.task])
  train_set = suite.make_prompts("train", config.data.train_prompts_per_task, config.seed)
  eval_set = suite.make_prompts("eval", config.data.eval_prompts_per_task, config.seed)
  return suite, train_set, eval_set


def prompt_width(train_set, eval_set) -> int:
  """Tokens of the longest prompt with its BOS: the padded prompt width."""
  return 1 + max(len(t) for t in list(train_set.tokens) + list(eval_set.tokens))


def build(config, progress: bool = True, width: int | None = None) -> Setup:
  """Everything before the first step. `width` pads prompts wider than they need
  (runs stacked along a seed axis must share shapes)."""
  validate(config)
  suite, train_set, eval_set = prompt_sets(config)
  width = width or prompt_width(train_set, eval_set)
  train_prompts = encode_prompts(train_set, width)
  eval_prompts = encode_prompts(eval_set, width)
  model_cfg = get_scale(config.model, max_seq_len=width + config.grpo.max_new_tokens)
  graphdef, params = init_model(model_cfg, jax.random.key(config.seed))

  ws = config.warm_start
  sequences = make_reference_sequences(suite, *train_prompts, train_set.features,
                                       per_prompt=ws.responses_per_prompt, quality=ws.quality,
                                       seed=config.seed)
  recipe = {k: v for k, v in ws.to_dict().items() if k != "cache_dir"}
  cache = cache_file(ws.cache_dir, task=config.task, model=config.model, seed=config.seed,
                     max_new=config.grpo.max_new_tokens,  # sizes the model's context
                     sequences=fingerprint(sequences), init=fingerprint(params), **recipe)
  params, losses = supervised_warm_start(graphdef, params, sequences, steps=ws.steps,
                                         batch_size=ws.batch_size, learning_rate=ws.learning_rate,
                                         seed=config.seed, cache_path=cache, progress=progress)

  g = config.grpo
  settings = GRPOSettings(group_size=g.group_size, max_new_tokens=g.max_new_tokens,
                          temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                          eos_id=tasks.EOS, pad_id=tasks.PAD, mu=g.mu,
                          num_minibatches=g.num_minibatches, eps_low=g.eps_low,
                          eps_high=g.eps_high, beta=g.beta, loss_aggregation=g.loss_aggregation)
  o = config.optimizer
  tx = make_optimizer(o.learning_rate, o.grad_clip, o.weight_decay)
  aggregator = aggregator_from_config(config)
  engine = make_engine(graphdef, tx, aggregator, settings, estimator=config.advantage.name,
                       grader=suite.grade)
  state = init_train_state(params, tx, aggregator, num_prompts=len(train_set),
                           max_criteria=suite.num_criteria, rng=jax.random.key(config.seed + 1))
  return Setup(config, suite, train_set, eval_set, train_prompts, eval_prompts, graphdef, engine,
               state, settings, criterion_names(suite, train_set.features, train_set.mask), losses,
               train_set.rubric())


def criterion_names(suite, features, mask) -> np.ndarray:
  """[N, K] '<task>/<criterion>' of each prompt's slots ('' on disabled slots)."""
  names = np.full(mask.shape, "", dtype=object)
  for row, t_index in enumerate(suite.task_index(features)):
    task = suite.tasks[int(t_index)]
    for k, criterion in enumerate(task.criteria):
      if mask[row, k]:
        names[row, k] = f"{task.name}/{criterion.name}"
  return names


def batch_indices(step: int, num_prompts: int, batch_size: int, seed: int) -> np.ndarray:
  """Prompts of step `step`: epochs of seeded permutations, a pure function of (seed, step)."""
  start = step * batch_size
  positions = np.arange(start, start + batch_size)
  epochs = positions // num_prompts
  out = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    perm = np.random.default_rng([seed, int(epoch)]).permutation(num_prompts)
    sel = epochs == epoch
    out[sel] = perm[positions[sel] % num_prompts]
  return out


def make_batch(prompt_set, prompts, idx, rubric=None) -> PromptBatch:
  """Rows `idx` of a prompt set. Pass its `rubric` when calling per step: building
  (and validating) it costs more host time than the rest of the batch."""
  tokens, mask = prompts
  rubric = prompt_set.rubric() if rubric is None else rubric
  take = lambda x: jnp.asarray(np.asarray(x)[idx])
  return PromptBatch(take(tokens), take(mask), take(prompt_set.features),
                     jax.tree.map(lambda x: x[jnp.asarray(idx)], rubric))


def _named_means(values: np.ndarray, names: np.ndarray) -> dict:
  """Mean of [B, K] `values` per distinct slot name."""
  out: dict[str, list] = {}
  for v, n in zip(values.ravel(), names.ravel()):
    if n:
      out.setdefault(n, []).append(float(v))
  return {n: float(np.mean(v)) for n, v in sorted(out.items())}


def train_log(metrics: dict, names: np.ndarray, step: int) -> dict:
  """Flattens one step's device metrics into the stable `train/...` keys."""
  m = jax.device_get(metrics)
  row: dict[str, Any] = {"step": step}
  for key, value in m.items():
    value = np.asarray(value)
    if value.ndim == 0:
      row[f"train/{key}"] = float(value)
  for key, prefix in (("prompt_pass_rate", "pass_rate"), ("prompt_weight", "weight"),
                      ("prompt_factor", "factor")):
    if key in m:
      for name, value in _named_means(np.asarray(m[key]), names).items():
        row[f"train/{prefix}/{name}"] = value
  return row


def evaluate(setup: Setup, params, rng, *, greedy: bool, num_samples: int = 1,
             temperature: float = 1.0) -> dict:
  """METHODS §7 metrics of responses to the held-out prompts (flat, unprefixed keys)."""
  suite, eval_set = setup.suite, setup.eval_set
  tokens, mask = setup.eval_prompts
  g = 1 if greedy else num_samples
  rep = lambda a: jnp.asarray(np.repeat(np.asarray(a), g, axis=0))
  out = sampling.sample(setup.graphdef, params, rep(tokens), rep(mask), rng,
                        max_new_tokens=setup.settings.max_new_tokens, temperature=temperature,
                        eos_id=tasks.EOS, pad_id=tasks.PAD, greedy=greedy)
  scores = _grade(suite, rep(eval_set.features), out.tokens, out.mask)
  n, k = eval_set.mask.shape
  scores = scores.reshape(n, g, k)
  rubric = eval_set.rubric()
  m = jax.device_get(metrics_lib.compute_metrics(scores, jnp.ones(scores.shape, bool), rubric,
                                                 num_categories=len(suite.categories)))
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
  for c, name in enumerate(suite.categories):
    if m["category_count"][c] > 0:
      row[f"category/{name}"] = float(m["category_pass_rate"][c])
  names = criterion_names(suite, eval_set.features, eval_set.mask)
  for name, value in _named_means(np.asarray(m["criterion_pass_rate"]), names).items():
    row[f"criterion/{name}"] = value
  return row


def eval_key(config) -> jax.Array:
  """The evaluation RNG of a run; re-evaluating a checkpoint with it reproduces the logged row."""
  return jax.random.key(config.seed + 2)


def evaluate_both(setup: Setup, params, rng, step: int) -> dict:
  """Greedy (`eval/...`) and sampled (`eval_sampled/...`) held-out metrics."""
  c = setup.config.eval
  rng = jax.random.fold_in(rng, step)
  row = {f"eval/{k}": v for k, v in evaluate(setup, params, rng, greedy=True).items()}
  sampled = evaluate(setup, params, rng, greedy=False, num_samples=c.num_samples,
                     temperature=c.temperature)
  row.update({f"eval_sampled/{k}": v for k, v in sampled.items()})
  return row


_GRADERS: dict = {}


def _grade(suite, features, tokens, mask):
  if suite.name not in _GRADERS:
    _GRADERS[suite.name] = jax.jit(suite.grade)
  return _GRADERS[suite.name](features, tokens, mask)


class MetricWriter:
  """Appends rows to metrics.jsonl and scalars to TensorBoard."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, row: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    step = int(row["step"])
    for key, value in row.items():
      if key != "step" and isinstance(value, (int, float)):
        self._tb.add_scalar(key, value, step)
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def _truncate_log(path: str, last_step: int) -> None:
  """Drops rows past the restored step, so a resumed run never logs a step twice."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    rows = [line for line in f if line.strip() and json.loads(line)["step"] <= last_step]
  with open(path, "w") as f:
    f.writelines(rows)


class RunLog:
  """The host side of one run: metrics.jsonl, TensorBoard, evaluations, checkpoints."""

  def __init__(self, config, setup: Setup, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    self.config, self.setup, self.workdir = config, setup, workdir
    self.ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints)
    self.eval_rng = eval_key(config)
    self.final: dict = {}
    self._writer = None
    # Loop seconds of the run's earlier segments, restored with its checkpoint, so that
    # train/seconds counts the whole run's training loop across restarts.
    self.seconds_before = 0.0

  def restore(self, state):
    """The latest checkpoint restored onto `state`'s structure (and shardings), or `state`."""
    restored = self.ckpt.restore(state)
    if restored is None:
      # A run that died before its first checkpoint starts over: drop its rows, so the
      # log never holds a step twice.
      _truncate_log(os.path.join(self.workdir, "metrics.jsonl"), -1)
      return state
    state, meta = restored
    _truncate_log(os.path.join(self.workdir, "metrics.jsonl"), int(meta["step"]))
    self.seconds_before = float(meta.get("train_seconds", 0.0))  # absent in older checkpoints
    return state

  @property
  def writer(self) -> "MetricWriter":
    if self._writer is None:  # after restore(), which may truncate the log
      self._writer = MetricWriter(self.workdir)
    return self._writer

  def begin(self, params) -> None:
    """The warm-started policy's numbers: the baseline every curve starts from."""
    self.final = {"step": 0, **evaluate_both(self.setup, params, self.eval_rng, 0)}
    self.writer.write(self.final)

  def after_step(self, done: int, metrics, idx, seconds: float, state_fn) -> dict | None:
    """Logs, evaluates and checkpoints as the config says; `state_fn()` gives the state.

    `seconds`: the training loop's wall time since this process (re)started it."""
    c = self.config
    seconds += self.seconds_before
    row = None
    if done % c.log_every == 0 or done == c.total_steps:
      row = train_log(metrics, self.setup.criterion_names[idx], done)
      row["train/seconds"] = seconds
    if done % c.eval_every == 0 or done == c.total_steps:
      row = row or {"step": done}
      row.update(evaluate_both(self.setup, state_fn().params, self.eval_rng, done))
      self.final = row
    if row is not None:
      self.writer.write(row)
    if done % c.checkpoint_every == 0 or done == c.total_steps:
      self.ckpt.save(done, state_fn(), {"step": done, "data_position": done,
                                         "train_seconds": seconds})
    return row

  def close(self) -> dict:
    self.ckpt.close()
    self.writer.close()
    # Nothing left to train: report the last logged evaluation.
    return self.final or last_eval_row(os.path.join(self.workdir, "metrics.jsonl"))


def run(config: ml_collections.ConfigDict, workdir: str, progress: bool = True) -> dict:
  """Trains (resuming from `workdir` if it holds checkpoints) and returns the final eval row."""
  setup = build(config, progress=progress)
  log = RunLog(config, setup, workdir)
  mesh = sharding.make_mesh(tuple(config.mesh.shape))
  state_sh = sharding.state_shardings(setup.state, mesh)
  # The restore target carries the shardings, so restored arrays land on the mesh.
  state = log.restore(sharding.put(setup.state, state_sh))
  start = int(state.step)
  b = config.data.prompts_per_step
  # Every process builds the same global batch (a pure function of the step) and
  # feeds only its own rows; one process feeds them all.
  rows = distributed.process_rows(sharding.batch_dim_sharding(mesh), b)
  first = make_batch(setup.train_set, setup.train_prompts,
                     batch_indices(0, len(setup.train_set), b, config.seed), setup.train_rubric)
  batch_sh = sharding.batch_shardings(distributed.process_slice(first, rows), mesh, batch_size=b)
  step_fn = sharding.shard_train_step(setup.engine.train_step, mesh, state_sh, batch_sh)
  if start == 0:
    log.begin(state.params)
  bar = tqdm(range(start, config.total_steps), desc=f"train {_label(config)}",
             initial=start, total=config.total_steps, disable=not progress)
  t0 = _clock()
  for step in bar:
    idx = batch_indices(step, len(setup.train_set), b, config.seed)
    batch = make_batch(setup.train_set, setup.train_prompts, idx, setup.train_rubric)
    batch = sharding.put_process_batch(distributed.process_slice(batch, rows), batch_sh, b)
    state, m = step_fn(state, batch)
    row = log.after_step(step + 1, m, idx, _clock() - t0, lambda: state)
    if row is not None and "train/reward_mean" in row:
      bar.set_postfix(reward=f"{row['train/reward_mean']:.3f}")
  return log.close()


def run_seeds(config: ml_collections.ConfigDict, seeds, workdirs, progress: bool = True) -> list:
  """Trains one run per seed as ONE vmapped program (a leading seed axis on state and batch).

  Each seed keeps its own prompts, warm start, workdir, metrics and
  checkpoints, exactly as `run` would write them; only the step is shared.
  Needs a one-device mesh. Runs whose checkpoints are at different steps are
  trained one after another instead. Results match separate runs up to
  floating-point reassociation, which sampling can amplify: compare seeds
  run the same way.
  """
  seeds, workdirs = list(seeds), list(workdirs)
  if tuple(config.mesh.shape) != (1, 1, 1):
    raise ValueError("run_seeds vmaps over seeds on one device; use mesh.shape=(1, 1, 1)")
  configs = []
  for seed in seeds:
    c = copy.deepcopy(config)
    c.seed = seed
    configs.append(c)
  width = max(prompt_width(*prompt_sets(c)[1:]) for c in configs)
  setups = [build(c, progress=progress, width=width) for c in configs]
  logs = [RunLog(c, s, w) for c, s, w in zip(configs, setups, workdirs)]
  states = [log.restore(s.state) for log, s in zip(logs, setups)]
  starts = {int(s.step) for s in states}
  if len(starts) > 1:
    for log in logs:
      log.close()
    return [run(c, w, progress) for c, w in zip(configs, workdirs)]
  start = starts.pop()
  state = jax.tree.map(lambda *x: jnp.stack(x), *states)
  step_fn = jax.jit(jax.vmap(setups[0].engine.train_step), donate_argnums=(0,))
  if start == 0:
    for log, s in zip(logs, states):
      log.begin(s.params)
  b = config.data.prompts_per_step
  bar = tqdm(range(start, config.total_steps), desc=f"train {_label(config)} x{len(seeds)} seeds",
             initial=start, total=config.total_steps, disable=not progress)
  t0 = _clock()
  for step in bar:
    idxs = [batch_indices(step, len(s.train_set), b, c.seed) for s, c in zip(setups, configs)]
    batches = [make_batch(s.train_set, s.train_prompts, i, s.train_rubric)
               for s, i in zip(setups, idxs)]
    state, m = step_fn(state, jax.tree.map(lambda *x: jnp.stack(x), *batches))
    seconds = _clock() - t0
    for i, log in enumerate(logs):
      log.after_step(step + 1, jax.tree.map(lambda x: x[i], m), idxs[i], seconds,
                     lambda: jax.tree.map(lambda x: x[i], state))
  return [log.close() for log in logs]


def _label(config) -> str:
  """What a progress bar trains, e.g. 'keywords/base focal': a sweep runs many of them."""
  return f"{config.task}/{config.model} {config.aggregator.name}"


def last_eval_row(path: str) -> dict:
  rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
  evals = [r for r in rows if "eval/mean_rubric_reward" in r]
  return evals[-1] if evals else {}


def category_table(row: dict) -> str:
  """A text table of per-category pass rates (greedy and sampled) from an eval row."""
  cats = sorted(k[len("eval/category/"):] for k in row if k.startswith("eval/category/"))
  lines = [f"{'category':<32}{'greedy':>10}{'sampled':>10}"]
  for c in cats:
    sampled = row.get(f"eval_sampled/category/{c}", float("nan"))
    lines.append(f"{c:<32}{row[f'eval/category/{c}']:>10.3f}{sampled:>10.3f}")
  lines.append(f"{'mean rubric reward (%)':<32}{row.get('eval/mean_rubric_reward', float('nan')):>10.2f}"
               f"{row.get('eval_sampled/mean_rubric_reward', float('nan')):>10.2f}")
  lines.append(f"{'strict completion':<32}{row.get('eval/strict_completion', float('nan')):>10.3f}"
               f"{row.get('eval_sampled/strict_completion', float('nan')):>10.3f}")
  return "\n".join(lines)
