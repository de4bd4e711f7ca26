"""The suite's own machinery (tests/conftest.py): the XLA flags its processes get, and the child
process that runs a `default_codegen` test with XLA's default CPU emitters."""
import os

import pytest

from conftest import CHILD, GIVEN_XLA_FLAGS, xla_flags


def test_xla_flags_keep_the_callers_own_and_replace_the_device_count(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true "
                                  "--xla_force_host_platform_device_count=2")
  flags = xla_flags(devices=8).split()
  assert flags == ["--xla_cpu_use_fusion_emitters=true", "--xla_backend_optimization_level=0",
                   "--xla_force_host_platform_device_count=8"]
  monkeypatch.setenv("XLA_FLAGS", "")
  assert xla_flags() == "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def test_the_session_compiles_with_the_fast_emitters():
  # An xdist worker's given flags are the controller's, which already hold the fast setting.
  given = dict(f.split("=", 1) for f in GIVEN_XLA_FLAGS.split() if "=" in f)
  if os.environ.get(CHILD) == "1" or given.get("--xla_cpu_use_fusion_emitters", "false") != "false":
    pytest.skip("a default_codegen child, or the caller chose the emitters (XLA_FLAGS)")
  assert "--xla_cpu_use_fusion_emitters=false" in os.environ["XLA_FLAGS"].split()


@pytest.mark.default_codegen
def test_a_default_codegen_test_runs_in_a_child_with_xlas_own_emitters():
  """Passes only where the hook sent it: in the child, whose XLA_FLAGS leave the emitters alone."""
  assert os.environ.get(CHILD) == "1"
  assert not any(f.startswith("--xla_cpu_use_fusion_emitters")
                 for f in os.environ.get("XLA_FLAGS", "").split())
