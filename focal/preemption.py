"""Stopping a run cleanly on SIGTERM or SIGINT, the way spot VMs and schedulers end jobs.

A preemptible TPU VM, Kubernetes or SLURM sends SIGTERM (then SIGKILL after a grace period);
Ctrl-C sends SIGINT. Inside `StopRequest`, either one only sets a flag: the loop finishes the
step in progress (its rows and evaluation included), checks `agreed()` at the step boundary,
saves a checkpoint of that step, waits for every save in flight, releases the run directory's
lock and raises `Preempted`. The entry points exit with status `EXIT_CODE` (75, EX_TEMPFAIL
of sysexits.h: "temporary failure, try again"), and the same command resumes from that step.
A second signal acts as it would without this module (SIGINT: KeyboardInterrupt; SIGTERM: the
process ends at once), for a job that must stop now.

Multi-host: a signal may reach some processes and not others, or at different steps. Every
process calls `agreed()` at every step boundary; it is a collective over all processes (an
all-gather of the flags), so all of them stop after the same step and save it together.
"""
from __future__ import annotations

import os
import signal
import threading

import jax
import numpy as np

EXIT_CODE = 75  # EX_TEMPFAIL: the run stopped on a signal, checkpointed; rerun to resume
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
  """The run stopped on a signal after checkpointing `step`; rerunning resumes from it."""

  def __init__(self, step: int, signame: str, workdirs):
    where = ", ".join(workdirs)
    super().__init__(f"stopped by {signame} after step {step}: checkpoint saved at step {step} "
                     f"in {where}; rerun the same command to resume (exit status {EXIT_CODE})")
    self.step, self.signame = step, signame


class StopRequest:
  """Catches SIGTERM and SIGINT while active (a context manager; the main thread only, where
  Python delivers signals; elsewhere it catches nothing and `agreed()` is False)."""

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict = {}

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    self.signum = self.signum or signum
    # A second signal acts as it would have without us.
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
    # os.write, not print: the handler may interrupt a write to the same stream (tqdm).
    os.write(2, f"\nfocal: {signal.Signals(signum).name} received; finishing this step, then "
                f"checkpointing and exiting with status {EXIT_CODE} (send it again to stop at "
                "once)\n".encode())

  @property
  def signame(self) -> str:
    return signal.Signals(self.signum).name if self.signum else "a signal on another process"

  def agreed(self) -> bool:
    """Whether any process was asked to stop: a collective when there are several, so call
    it at the same points on every process."""
    local = self.signum is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
    return bool(np.any(flags))
