"""experiments.plan: the loop's programs compiled for TPU slices without a TPU (libtpu from the
`plan` extra), their memory per chip, fit, roofline and micro-batch search."""
import dataclasses
import json
import math
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from configs.paper import pow3r_healthbench
from focal import aggregators
from focal.plan import chips, flops, make_plan, report
from focal.plan.programs import Program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "tests", "data", "hf_tiny_qwen3")  # its config.json: 2 layers, width 16


def tiny_config(**grpo):
  """The HealthBench recipe (judge: rollout and learn programs) on a 2-layer Qwen3 shape."""
  c = pow3r_healthbench.get_config("smoke")
  c.model.checkpoint = TINY
  c.mesh.shape = (1, 4, 1)
  c.data.prompts_per_step = 4
  c.data.max_prompt_tokens = 16
  for k, v in grpo.items():
    c.grpo[k] = v
  return c


def test_slices_are_named_as_cloud_tpu_names_them():
  assert chips.parse_slice("v5p-8").chips == 4 and chips.parse_slice("v5p-16").chips == 8
  assert chips.parse_slice("v4-8").topology_name == "v4:2x2x1"
  assert chips.parse_slice("v5e-8").topology_name == "v5e:2x4"
  assert chips.parse_slice("v6e-8").chips == 8
  assert chips.parse_slice("v5p-128").shape == (4, 4, 4)
  for bad, match in (("v5p-6", "4, 8, 16"), ("v5x-8", "unknown TPU slice"), ("v5e-3", "chips"),
                     ("v5p-7", "multiple of 2")):
    with pytest.raises(ValueError, match=match):
      chips.parse_slice(bad)


def test_flops_count_every_loop_trip():
  """XLA's cost analysis counts a loop body once; the jaxpr count multiplies scan lengths and
  gives each while loop the steps it is told."""
  a = jnp.ones((8, 16))
  b = jnp.ones((16, 4))
  body = 2 * 8 * 16 * 4

  def f(a, b):
    ys = jax.lax.scan(lambda c, _: (c, c @ b), a, None, length=5)[1]
    z = jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] @ b @ b.T), (0, a))[1]
    return ys, z

  jaxpr = jax.make_jaxpr(f)(a, b)
  assert flops.count_whiles(jaxpr) == 1
  total, once = flops.count(jaxpr, while_trips=3)
  assert once == body + 2 * body
  assert total == 5 * body + 3 * 2 * body
  # A batched dot_general: [2, 8, 16] x [2, 16, 4].
  batched = jax.make_jaxpr(lambda x, y: jnp.einsum("bij,bjk->bik", x, y))(
      jnp.ones((2, 8, 16)), jnp.ones((2, 16, 4)))
  assert flops.count(batched) == (2 * body, 2 * body)


def fake_program(total, name="learn"):
  return Program(name, True, 1.0, resident_gib=1.0, temp_gib=total - 1.0)


def test_search_finds_the_largest_size_that_fits_by_bisection():
  spec = dataclasses.replace(chips.parse_slice("v5p-8"),
                             chip=dataclasses.replace(chips.CHIPS["v5p"], hbm_gib=10))
  facts = {"rollouts": 64, "batch_shards": 4, "mesh": (1, 4, 1)}
  plan = report.Plan(spec, [fake_program(20.0)], facts, {"micro_batch_size": 0})
  assert not plan.fits and plan.usable_gib == pytest.approx(9.0)
  tried = []

  def compile_fn(config, name):  # memory grows with the micro-batch: 1 GiB + size / 4
    tried.append(config.grpo.micro_batch_size)
    return fake_program(1.0 + config.grpo.micro_batch_size / 4, name)

  found = report.search_sizes(tiny_config(), "learn", plan, compile_fn)
  assert found == {"micro_batch_size": 32}  # 9 GiB usable: 1 + 32 / 4 = 9
  assert report.candidates(64, 4) == [64, 32, 16, 8, 4]
  assert len(tried) <= 3 and 64 not in tried  # the whole batch (0) is what did not fit
  tried.clear()  # from a size that did not fit, only smaller ones are tried
  assert report.search_sizes(tiny_config(micro_batch_size=16), "learn", plan,
                             compile_fn) == {"micro_batch_size": 8}
  assert max(tried) < 16
  assert report.largest_fitting([8, 4], lambda s: False) is None


def test_the_plan_compiles_the_loops_programs_for_two_topologies_offline(monkeypatch):
  """A judged recipe on a tiny Qwen3 shape, v5e-4 and v5p-8 (4 chips each), micro-batched:
  rollout, learn (and evaluation's sampler) compile; the resident state is the parameters, AdamW's two moments and a
  reference in the compute dtype, or without the reference when it waits in host memory
  (mesh.ref_memory_kind=pinned_host, compiled for TPU); no socket is opened on the way."""
  def refuse(*args, **kwargs):
    raise AssertionError("the plan tried the network")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  config = tiny_config(micro_batch_size=4, rollout_micro_batch_size=4)
  resident = {}
  for topology, hbm, ref_memory, evals in (("v5e-4", 16, "device", 0),
                                           ("v5p-8", 95, "pinned_host", 2)):
    config.mesh.ref_memory_kind = ref_memory
    plan = make_plan(config, topology, num_prompts=8, max_criteria=3, eval_prompts=evals,
                     search=False)
    out = plan.to_json()
    assert out["topology"] == topology and out["hbm_gib_per_chip"] == hbm
    assert out["compiled"] is True and out["fits"] is True
    # Evaluation's sampler too, when held-out prompts are given (2 x 2 samples, 4 per call).
    assert set(out["programs"]) == {"rollout", "learn"} | ({"evaluate"} if evals else set())
    for p in plan.programs:
      parts = (p.resident_gib + p.inputs_gib + p.output_gib + p.temp_gib + p.code_gib)
      assert out["programs"][p.name]["total_gib"] == pytest.approx(parts)
      assert p.temp_gib > 0 and p.flops >= p.xla_flops > 0 and p.compile_s > 0
    # 2 layers of [q 16x32, k and v 16x16, o 32x16, two head norms 8, MLP 3 x 16x32, two norms
    # 16], the tied 96x16 embedding and the final norm: all under fsdp_min_size, so whole on
    # every chip; float32 (the smoke preset computes in float32, so the reference is too).
    params = 2 * (512 + 2 * 256 + 512 + 2 * 8 + 3 * 512 + 2 * 16) + 96 * 16 + 16
    assert plan.facts["params"] == params
    state = {k: v * 2 ** 30 for k, v in plan.facts["state_gib"].items()}
    assert state["params"] == pytest.approx(4 * params) and state["ref_params"] == state["params"]
    assert state["opt_state"] == pytest.approx(2 * 4 * params + 4)  # mu, nu and AdamW's count
    agg = sum(x.nbytes for x in jax.tree.leaves(aggregators.make("pow3r").init(8, 3)))
    resident[ref_memory] = sum(state.values()) + 4 + 8 + agg  # step, PRNG key, POW3R's table
    if ref_memory == "pinned_host":  # the reference waits in host memory, copied in for use
      resident[ref_memory] -= state["ref_params"]
      assert plan.programs[1].host_gib * 2 ** 30 == pytest.approx(state["ref_params"])
    assert plan.programs[0].resident_gib * 2 ** 30 == pytest.approx(resident[ref_memory])
    assert "FITS" in plan.format()
  assert json.dumps(out)


@pytest.mark.slow
def test_cli_writes_the_json_and_says_what_does_not_fit(tmp_path):
  """The entry point as documented, on the tiny shape: a v5e-1 cannot hold 4 chips' mesh (a
  clear error); on v5p-8 it fits and the JSON holds the contract's keys."""
  base = [sys.executable, "-m", "experiments.plan", "--config=configs/paper/pow3r_healthbench.py:smoke",
          f"--config.model.checkpoint={TINY}", "--config.data.prompts_per_step=4",
          "--config.data.max_prompt_tokens=16"]
  env = {**os.environ, "PYTHONPATH": REPO}
  out = subprocess.run(base + ["--topology=v5e-1", "--config.mesh.shape=(1,4,1)"], cwd=REPO,
                       env=env, capture_output=True, text=True)
  assert out.returncode != 0 and "v5e-1 has 1 chips" in out.stderr
  path = tmp_path / "plan.json"
  out = subprocess.run(base + ["--topology=v5p-8", "--config.mesh.shape=(1,4,1)",
                               f"--json={path}"], cwd=REPO, env=env, capture_output=True,
                       text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "FITS" in out.stdout
  saved = json.loads(path.read_text())
  assert {"topology", "hbm_gib_per_chip", "compiled", "fits", "programs"} <= set(saved)
  assert saved["programs"]["learn"]["total_gib"] > 0
  assert saved["programs"]["rollout"]["total_gib"] > 0
  assert math.isfinite(saved["step_roofline_s"])


@pytest.mark.slow
def test_every_documented_plan_command_runs_on_a_tiny_shape(tmp_path):
  """The experiments.plan commands of docs/SCALING.md and the paper configs' docstrings, as
  written but for the checkpoint (the tiny Qwen3's config.json) and a shrunk batch: they parse,
  compile and fit. (tests/test_scaling_commands.py lists them as not run there: a Qwen3-4B
  compile takes tens of minutes and ~10 GB on this machine.)"""
  sys.path.insert(0, os.path.join(REPO, "tests"))
  from doc_commands import document_commands
  from test_scaling_commands import DOCS
  commands = [w for doc in DOCS for w in document_commands(os.path.join(REPO, doc)).values()
              if w[:3] == ["python", "-m", "experiments.plan"]]
  assert len(commands) >= 2
  for argv in commands:
    mesh = next(w for w in argv if w.startswith("--config.mesh.shape="))
    data, fsdp, _ = (int(v) for v in mesh.split("=")[1].strip("()").split(","))
    argv = [f"--config.model.checkpoint={TINY}" if w.startswith("--config.model.checkpoint=")
            else f"--json={tmp_path / 'plan.json'}" if w.startswith("--json=") else w
            for w in argv]
    shrink = [f"--config.data.prompts_per_step={data * fsdp}", "--config.data.max_prompt_tokens=16",
              "--config.grpo.group_size=2", "--config.grpo.max_new_tokens=8",
              "--config.grpo.micro_batch_size=0", "--config.grpo.rollout_micro_batch_size=0",
              "--eval_prompts=0", "--num_prompts=8", "--max_criteria=3"]
    out = subprocess.run([sys.executable] + argv[1:] + shrink, cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert out.returncode == 0, (argv, out.stderr[-2000:])
    assert "FITS" in out.stdout


def test_a_mesh_over_two_hosts_gives_each_process_contiguous_rows():
  """jax.make_mesh orders a v5p-16's 8 chips (2 hosts) for the torus, interleaving the hosts
  along fsdp: process 0 would hold rows 0, 2, 4, 6 and could not feed only its own rows. The
  plan found it; sharding.make_mesh lays processes out in blocks."""
  from focal import distributed, sharding
  devices = chips.devices(chips.parse_slice("v5p-16"))
  assert {d.process_index for d in devices} == {0, 1}
  for shape in ((1, 8, 1), (2, 4, 1), (1, 4, 2)):
    mesh = sharding.make_mesh(shape, devices)
    rows = sharding.batch_dim_sharding(mesh)
    blocks = {}
    for device, index in rows.devices_indices_map((16,)).items():
      blocks.setdefault(device.process_index, set()).update(range(*index[0].indices(16)))
    for process, held in blocks.items():
      assert held == set(range(min(held), max(held) + 1)), (shape, process, sorted(held))
    assert distributed.process_rows(rows, 16) == slice(0, 8)
