"""The decode plan (focal.decode_plan): the layout each platform decodes in. Both layouts give
the same tokens (tests/test_sampling.py); this pins which one each platform gets, a speed choice
docs/PERFORMANCE.md section 6 measured."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from focal import decode_plan


def test_cpu_decodes_over_per_layer_copies_with_each_rows_own_prefix():
  assert jax.default_backend() == "cpu"
  assert decode_plan.per_layer_decode() is True
  assert decode_plan.shared_prefix_decode() is False


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_accelerators_scan_the_stacked_layers_over_one_shared_prefix(monkeypatch, platform):
  monkeypatch.setattr(decode_plan, "target_platform", lambda: platform)
  assert decode_plan.per_layer_decode() is False
  assert decode_plan.shared_prefix_decode() is True


def test_stop_ids_and_uniforms():
  np.testing.assert_array_equal(decode_plan.stop_array(None), [-1])
  np.testing.assert_array_equal(decode_plan.stop_array(7), [7])
  np.testing.assert_array_equal(decode_plan.stop_array([7, 9]), [7, 9])
  u = decode_plan.draw_uniforms(jax.random.key(0), 5, 3)
  assert u.shape == (5, 3) and u.dtype == jnp.float32
  assert bool(jnp.all((u >= 0) & (u < 1)))
