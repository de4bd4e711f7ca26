import atexit
import os
import re
import shutil
import subprocess
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
# Tests compile hundreds of tiny programs and run each for a few steps, so compiling is most of
# the suite's time. Two XLA CPU settings cut it (the suite: 339 s -> about 215 s here), and
# neither changes a program's HLO, so what each program computes is the same:
# - backend optimisation level 0: LLVM's passes buy nothing for a few steps;
# - the elemental emitters instead of the MLIR fusion emitters (about 40% less compile time).
# The rounding inside one program does not change, but the elemental emitters can round a shared
# computation differently in two different programs (a gradient's last bit, 1e-10). The tests
# that compare two programs bit for bit carry the `default_codegen` mark and run with XLA's own
# emitters in a child process (below). Subprocesses inherit these flags; a test that sets its own
# XLA_FLAGS, for simulated devices, adds them through `xla_flags`.
FAST_CODEGEN = {"--xla_backend_optimization_level": "0", "--xla_cpu_use_fusion_emitters": "false"}
CHILD = "FOCAL_TEST_DEFAULT_CODEGEN"  # set in the child that runs a `default_codegen` test


def xla_flags(devices: int | None = None, codegen: dict = FAST_CODEGEN) -> str:
  """XLA_FLAGS for this session's processes: the caller's own, then the codegen settings the
  caller did not set itself, then a simulated device count."""
  own = [f for f in os.environ.get("XLA_FLAGS", "").split()
         if not f.startswith("--xla_force_host_platform_device_count")]
  given = {f.split("=")[0] for f in own}
  flags = own + [f"{k}={v}" for k, v in codegen.items() if k not in given]
  if devices is not None:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  return " ".join(flags)


GIVEN_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")  # the caller's, before the session's own
if os.environ.get(CHILD) != "1":
  os.environ["XLA_FLAGS"] = xla_flags()
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


def _without_group(item) -> str:
  """The node id pytest accepts on a command line (xdist's loadgroup appends '@group')."""
  marker = item.get_closest_marker("xdist_group")
  suffix = f"@{marker.args[0]}" if marker and marker.args else ""
  return item.nodeid[:-len(suffix)] if suffix and item.nodeid.endswith(suffix) else item.nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
  """A `default_codegen` test runs in a child pytest whose XLA uses its default CPU emitters
  (the ones users run): a bit-for-bit comparison of two programs is a claim about that code
  generation, not the suite's faster one. The parent's result is the child's."""
  if pyfuncitem.get_closest_marker("default_codegen") is None or os.environ.get(CHILD) == "1":
    return None
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_cpu_use_fusion_emitters")]
  env = dict(os.environ, XLA_FLAGS=" ".join(flags), **{CHILD: "1"})
  env.pop("PYTEST_XDIST_WORKER", None)
  proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0",
                         _without_group(pyfuncitem)], cwd=ROOT, env=env, capture_output=True,
                        text=True)
  if proc.returncode != 0 or not re.search(r"\b1 passed\b", proc.stdout):
    pytest.fail(f"with XLA's default CPU emitters (child pytest, exit {proc.returncode}):\n"
                f"{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}", pytrace=False)
  return True


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
