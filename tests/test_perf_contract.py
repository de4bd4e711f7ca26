"""The performance contract of the jitted GRPO step: one XLA program per iteration, no host
round trips inside it, the state donated and sharded on 8 simulated devices."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.readiness import host_round_trips, small_engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_step_is_one_program_without_host_callbacks():
  engine, state, batch = small_engine(batch_size=2)
  found = host_round_trips(engine.train_step, state, batch)
  assert found == {"jaxpr_callbacks": [], "hlo_callbacks": [], "host_transfers": [],
                   "hlo_modules": 1}


def test_host_round_trip_detector_sees_a_callback():
  """The check above can fail: a step that calls back to Python is caught at both levels."""
  def step(x):
    y = jax.pure_callback(lambda v: np.asarray(v) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
    return jnp.sum(y)

  found = host_round_trips(step, jnp.ones(3))
  assert found["jaxpr_callbacks"] == ["pure_callback"]
  assert found["hlo_callbacks"]


@pytest.mark.slow
def test_sharded_step_on_eight_devices_is_one_donated_program():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "readiness.py"),
                        "--json"], capture_output=True, text=True, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  facts = json.loads(out.stdout.strip().splitlines()[-1])
  assert facts["devices"] == 8 and facts["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
  assert facts["hlo_modules"] == 1
  assert not (facts["jaxpr_callbacks"] or facts["hlo_callbacks"] or facts["host_transfers"])
  assert facts["donated_state_leaves"] == facts["state_leaves"]
  # The partition rules reached the compiled program: column-parallel q, row-parallel o.
  assert facts["param_specs"]["layers/attn/q_proj/kernel"] == "P(None, 'fsdp', 'tensor')"
  assert facts["param_specs"]["layers/attn/o_proj/kernel"] == "P(None, 'tensor', 'fsdp')"
