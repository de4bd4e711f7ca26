import atexit
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# One persistent XLA compilation cache for this test session, fresh each session: tests build
# the same tiny programs again and again (every loop.run makes new jitted functions, every CLI
# test is a new process), and a cache hit is the same executable, so results do not change.
# Subprocesses inherit it through the environment. It goes when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="focal-tests-xla-")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
import jax  # noqa: E402  (after the environment: a plugin may have imported it already)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")))

DATA = os.path.join(ROOT, "tests", "data")


@pytest.fixture
def rar_path():
  return os.path.join(DATA, "rar_tiny.jsonl")


@pytest.fixture
def healthbench_path():
  return os.path.join(DATA, "healthbench_tiny.jsonl")


def tree(root):
  """Every path under root (relative), for 'nothing left behind' checks."""
  out = set()
  for dirpath, dirnames, filenames in os.walk(root):
    out.update(os.path.relpath(os.path.join(dirpath, n), root) for n in dirnames + filenames)
  return out
