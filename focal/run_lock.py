"""One trainer per run directory: a lock file holding {pid, host, since} of the trainer.

Two trainers on one directory would interleave their steps in one log and one checkpoint
folder. A lock left by a process that died on this host (kill -9, a crash) is taken over; one
held on another host, or by a live process, is `RunLocked`.
"""
from __future__ import annotations

import json
import os
import socket
import time


class RunLocked(RuntimeError):
  """Another live trainer holds the run directory."""


class RunDirError(RuntimeError):
  """The workdir cannot hold a run: a file, or not writable."""


class RunLock:
  """The lock file `name` in the run directory `path`."""

  def __init__(self, path: str, name: str):
    self.path = path
    self.lock_path = os.path.join(path, name)
    self.created = False

  def acquire(self) -> None:
    """Takes the directory for this process. A workdir that is a file, or cannot be written,
    is a RunDirError naming it."""
    self.created = not os.path.exists(self.path)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(2):
      try:
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        if not os.path.isdir(self.path):
          raise RunDirError(f"workdir {self.path} is a file, not a directory; pass a "
                            "directory (new or a run's) as --workdir") from None
        holder = self.holder()
        if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
          os.remove(self.lock_path)  # its trainer died (kill -9, a crash): stale
          continue
        raise RunLocked(
            f"{self.path} is in use by pid {holder.get('pid')} on {holder.get('host')} (lock "
            f"{self.lock_path}); two trainers on one run directory would interleave their "
            "steps. Use another --workdir, or delete the lock if that trainer is gone.") from None
      except OSError as e:
        raise RunDirError(f"workdir {self.path} cannot be written ({type(e).__name__}: "
                          f"{e.strerror or e}); pass a writable directory as --workdir") from None
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      return

  def holder(self) -> dict:
    """{pid, host, since} of the lock's holder; {} when there is none (or it is unreadable)."""
    try:
      with open(self.lock_path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def release(self) -> None:
    """Frees the directory if this process holds it; a directory the lock created and nothing
    else wrote goes too (a run refused while building leaves no empty workdir behind)."""
    if self.holder().get("pid") == os.getpid():
      os.remove(self.lock_path)
      if self.created and not os.listdir(self.path):
        os.rmdir(self.path)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True
