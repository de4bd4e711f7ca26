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
# Subprocesses inherit it through the environment, and so do pytest-xdist's workers: this runs
# in the controller before it starts them, so they share its cache (one compile serves both).
# It goes when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="focal-tests-xla-")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
# Tests compile hundreds of tiny programs and run each for a few steps: LLVM's optimization
# passes are most of the compile time (about half of it at level 0) and buy nothing here. The
# programs' HLO, and so what they compute, is the same; only the machine code is less tuned.
# Subprocesses inherit it (a test that sets its own XLA_FLAGS, for simulated devices, does not).
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()
import jax  # noqa: E402  (after the environment: a plugin may have imported it already)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")))

DATA = os.path.join(ROOT, "tests", "data")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
  """Under `-n N --dist loadgroup` (pytest.ini), the tests that share a module-scoped fixture
  (a trained run, a compiled engine) form one group on one worker, so it is built once; the
  other tests are spread one by one."""
  for item in items:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
      continue
    shared = any(defs[-1].scope in ("module", "class") for name, defs in
                 info.name2fixturedefs.items() if name in item.fixturenames and defs)
    if shared:
      item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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
