"""The host side of one run: its metrics, TensorBoard files, evaluations and checkpoints.

`focal.loop` makes one `Recorder` per run it trains and hands it every step's metrics; the
recorder decides (from `log_every`, `eval_every`, `checkpoint_every`) what is logged, evaluated
and saved, and restores a resumed run's counters from its checkpoint.
"""
from __future__ import annotations

import jax

from focal import components, evaluation, nonfinite
from focal.iteration import policy_params
from focal.metrics.rows import TokenCounter, train_row
from focal.provenance import config_record
from focal.rundir import RunDir


class Recorder:
  """The host side of one run: its metrics, TensorBoard files, evaluations and checkpoints."""

  def __init__(self, config, setup: components.Setup, run_dir: RunDir, data_changes=()):
    self.config, self.setup, self.run_dir = config, setup, run_dir
    self.data_changes = list(data_changes)  # allowed by the resume check; go to config.json
    # The trainer holds the lock: it may delete what a killed save left half written.
    self.ckpt = run_dir.checkpointer(keep=config.keep_checkpoints, cleanup_tmp=True)
    self.eval_rng = evaluation.eval_key(config)
    self.final: dict = {}
    self._writer = None
    # Loop seconds of the run's earlier segments, restored with its checkpoint, so that
    # train/seconds counts the whole run's training loop across restarts.
    self.seconds_before = 0.0
    # Likewise train/tokens_seen: every step's response tokens since step 0.
    self.tokens = TokenCounter()

  def restore(self, state):
    """The latest checkpoint restored onto `state`'s structure (and shardings), or `state`."""
    restored = self.ckpt.restore(state)
    if restored is None:
      # A run that died before its first checkpoint starts over: drop its rows, so the
      # log never holds a step twice.
      self._truncate(-1)
      return state
    state, meta = restored
    self._truncate(int(meta["step"]))
    self.seconds_before = float(meta.get("train_seconds", 0.0))  # absent in older checkpoints
    self.tokens = TokenCounter(meta.get("tokens_seen", 0))  # likewise
    return state

  def _truncate(self, step: int) -> None:
    if jax.process_index() == 0:  # process 0 writes (and trims) a shared run directory's log
      self.run_dir.truncate_metrics(step)

  @property
  def writer(self):
    if self._writer is None:  # after restore(), which may truncate the log
      self._writer = self.run_dir.metric_writer(self.config)
    return self._writer

  def begin(self, params) -> None:
    """The warm-started policy's numbers: the baseline every curve starts from (and, for a
    rubric dataset, how many prompts were kept, truncated or skipped)."""
    self.final = {"step": 0, **getattr(self.setup.source, "stats", {}),
                  **evaluation.evaluate_both(self.setup, params, self.eval_rng, 0)}
    self.writer.write(self.final)

  def after_step(self, done: int, metrics, idx, seconds: float, state_fn) -> dict | None:
    """Logs, evaluates and checkpoints as the config says; `state_fn()` gives the state.

    `seconds`: the training loop's wall time since this process (re)started it."""
    c = self.config
    seconds += self.seconds_before
    self.tokens.add(metrics)  # every step, logged or not (waits for nothing)
    row = None
    log = done % c.log_every == 0 or done == c.total_steps
    evaluate = done % c.eval_every == 0 or done == c.total_steps
    save = done % c.checkpoint_every == 0 or done == c.total_steps
    if log or evaluate or save:
      # The metrics are fetched anyway on these steps; a non-finite step raises here, before
      # it is evaluated or checkpointed ("stop"), or is reported ("skip_update").
      nonfinite.check_finite(metrics, done, self.setup.settings.nonfinite)
    if log:
      row = train_row(metrics, self.setup.source.train_names[idx], done)
      row["train/seconds"] = seconds
      row["train/tokens_seen"] = self.tokens.total()
      row["train/learning_rate"] = float(c.optimizer.learning_rate)  # constant (make_optimizer)
    if evaluate:
      row = row or {"step": done}
      row.update(evaluation.evaluate_both(self.setup, policy_params(state_fn()), self.eval_rng,
                                            done))
      self.final = row
    if row is not None:
      self.writer.write(row)
    if save:
      self._save(done, state_fn(), seconds)
    return row

  def save(self, step: int, state, seconds: float) -> None:
    """Checkpoints `state` as step `step` now (unless that step is already saved)."""
    if step not in self.ckpt.all_steps():
      self._save(step, state, seconds + self.seconds_before)

  def _save(self, step: int, state, seconds: float) -> None:
    # The config the state was trained under, and how many steps the log holds up to here:
    # a resume checks both (a hand-edited config.json, a truncated metrics.jsonl).
    logged = [s for s in self.writer.logged_steps() or () if s <= step]
    self.ckpt.save(step, state, {"step": step, "data_position": step, "train_seconds": seconds,
                                 "tokens_seen": self.tokens.total(),
                                 "config": config_record(self.config),
                                 "logged_steps": len(logged),
                                 "last_logged_step": max(logged, default=None)})

  def close(self, final: bool = True) -> dict | None:
    """Waits for checkpoints in flight and closes the writers; on a stopped run (`final`
    False) it does what it can and returns nothing."""
    try:
      self.ckpt.close()
    finally:
      if self._writer is not None:
        self._writer.close()
    if final:  # nothing left to train: report the last logged evaluation
      return self.final or self.run_dir.last_eval_row()
    return None
