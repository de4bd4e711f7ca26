"""Sharding: partition rules, mesh-invariance of training, multi-process training, cross-mesh restore.

Anything that needs several devices runs tests/sharding_runner.py in a subprocess
with XLA_FLAGS=--xla_force_host_platform_device_count=N, so this process keeps
its single CPU device. Rule tests need no devices: they run on abstract meshes.
"""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from focal import distributed, sharding
from focal.models.transformer import ModelConfig, abstract_model
from conftest import xla_flags
from test_iteration import make_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tests", "sharding_runner.py")
# Same shapes as the runner's model (n_kv_heads = n_heads = 2 so tensor=2 splits whole heads).
CFG = ModelConfig(vocab_size=260, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, head_dim=16,
                  d_ff=64, max_seq_len=64)
LR = 0.5
MESHES = ("1,1,1", "8,1,1", "2,4,1", "2,2,2")


def run_runner(args, devices=8, timeout=600, wait=True):
  # The session's own XLA_FLAGS (tests/conftest.py's code generation) go along.
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices=devices), JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, RUNNER, *args], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return finish(proc, timeout) if wait else proc


def finish(proc, timeout=600):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-4000:]
  return out


def specs(mesh_shape, rules=sharding.TENSOR_RULES, **kw):
  _, params = abstract_model(CFG)
  tree = sharding.param_specs(params, sharding.abstract_mesh(mesh_shape), rules, **kw)
  return {sharding.path_str(p): s for p, s in jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, P))[0]}


def test_tensor_and_fsdp_rules_place_named_parameters():
  got = specs((1, 2, 2), fsdp_min_size=0)
  assert got["layers/attn/q_proj/kernel"] == P(None, "fsdp", "tensor")     # column-parallel
  assert got["layers/attn/k_proj/kernel"] == P(None, "fsdp", "tensor")
  assert got["layers/attn/o_proj/kernel"] == P(None, "tensor", "fsdp")     # row-parallel
  assert got["layers/mlp/gate_proj/kernel"] == P(None, "fsdp", "tensor")
  assert got["layers/mlp/up_proj/kernel"] == P(None, "fsdp", "tensor")
  assert got["layers/mlp/down_proj/kernel"] == P(None, "tensor", "fsdp")
  assert got["embed"] == P("tensor", "fsdp")                           # vocab-parallel
  assert got["final_norm/scale"] == P("fsdp")


def test_fsdp_skips_small_parameters_and_picks_the_largest_divisible_dim():
  got = specs((1, 4, 1))  # default min size: the 32x32 kernels stay whole
  assert got["layers/attn/q_proj/kernel"] == P(None, None, "tensor")
  assert got["embed"] == P("tensor", "fsdp")
  pure = specs((1, 8, 1), sharding.REPLICATED_RULES, fsdp_min_size=0)
  assert pure["layers/mlp/down_proj/kernel"] == P(None, "fsdp", None)  # [2, 64, 32]: the 64
  assert pure["embed"] == P(None, "fsdp")                              # 260 % 8 != 0: the 32
  assert pure["layers/attn_norm/scale"] == P(None, "fsdp")       # never the layer axis


def test_indivisible_dimension_is_replicated_or_refused_under_strict():
  assert specs((1, 1, 8))["embed"] == P(None, None)                    # 260 % 8 != 0
  with pytest.raises(ValueError, match=r"embed: dimension 0 of shape \(260, 32\) does not divide"):
    specs((1, 1, 8), strict=True)


def test_unmatched_parameter_is_an_error():
  rules = [r for r in sharding.TENSOR_RULES if "norm" not in r[0]]
  with pytest.raises(ValueError, match="no partition rule matches parameter 'final_norm/scale'"):
    specs((1, 1, 2), rules)


def test_batch_must_divide_data_times_fsdp():
  mesh = sharding.abstract_mesh((2, 4, 1))
  shardings = sharding.batch_shardings(make_batch(8), mesh)
  assert {s.spec for s in jax.tree.leaves(shardings)} == {P(("data", "fsdp"))}
  with pytest.raises(ValueError, match="batch dimension 6 is not a multiple of data x fsdp = 8"):
    sharding.batch_shardings(make_batch(6), mesh)


def test_maybe_initialize_is_a_no_op_without_configuration_and_refuses_half_of_one(monkeypatch):
  for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
               distributed.ENV_PROCESS_ID, distributed.ENV_MODE):
    monkeypatch.delenv(name, raising=False)
  assert distributed.maybe_initialize() is False
  monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "2")
  with pytest.raises(ValueError, match="needs all of coordinator address"):
    distributed.maybe_initialize()
  monkeypatch.setenv(distributed.ENV_PROCESS_ID, "x")
  with pytest.raises(ValueError, match="FOCAL_PROCESS_ID must be an integer"):
    distributed.maybe_initialize("127.0.0.1:1234")


def assert_same_training(ref, got, steps, label):
  """Losses, rewards, gradient norms, KL, SGD gradients and parameters agree to 1e-5."""
  for key in ("loss", "reward_mean", "grad_norm", "kl", "response_length"):
    np.testing.assert_allclose(got[f"metric/{key}"][:steps], ref[f"metric/{key}"][:steps],
                               rtol=1e-5, atol=1e-6, err_msg=f"{label}: {key}")
  names = [k[len("param0/"):] for k in ref if k.startswith("param0/")]
  assert names
  for name in names:
    grad_ref = (ref[f"param0/{name}"] - ref[f"param1/{name}"]) / LR
    grad_got = (got[f"param0/{name}"] - got[f"param1/{name}"]) / LR
    scale = max(1.0, np.abs(grad_ref).max())
    np.testing.assert_allclose(grad_got, grad_ref, atol=1e-5 * scale, err_msg=f"{label}: grad {name}")
    for i in range(1, steps + 1):
      np.testing.assert_allclose(got[f"param{i}/{name}"], ref[f"param{i}/{name}"], atol=1e-5,
                                 err_msg=f"{label}: step {i} {name}")


def load(path, mesh):
  with np.load(path) as data:
    return {k.split("|", 1)[1]: data[k] for k in data.files if k.startswith(mesh + "|")}


def test_meshes_train_like_one_device(tmp_path):
  out = tmp_path / "meshes.npz"
  run_runner(["meshes", str(out), "--meshes", *MESHES, "--steps", "3", "--lr", str(LR)])
  ref = load(out, MESHES[0])
  assert np.ptp(ref["metric/reward_mean"]) > 0 or np.ptp(ref["metric/loss"]) > 0
  for mesh in MESHES[1:]:
    got = load(out, mesh)
    assert_same_training(ref, got, 3, mesh)
    np.testing.assert_array_equal(got["rng"], ref["rng"])


def test_checkpoint_saved_on_one_mesh_restores_onto_another(tmp_path):
  out = tmp_path / "ckpt.npz"
  run_runner(["checkpoint", str(out), "--ckpt", str(tmp_path / "ckpt")])
  with np.load(out) as data:
    saved = {k[len("saved/"):]: data[k] for k in data.files if k.startswith("saved/")}
    restored = {k[len("restored/"):]: data[k] for k in data.files if k.startswith("restored/")}
    mu_spec = str(data["mu_spec"])
  assert saved.keys() == restored.keys() and len(saved) > 40
  for name in saved:
    np.testing.assert_array_equal(restored[name], saved[name], err_msg=name)
  assert np.any(saved["opt_state/1/0/mu/embed"] != 0)  # real Adam moments, not zeros
  assert mu_spec == str(P(None, "fsdp", "tensor"))    # moments sharded like their parameter


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_two_processes(args):
  """The runner as processes 0 and 1 of 4 CPU devices each, joined on 127.0.0.1."""
  addr = f"127.0.0.1:{free_port()}"
  return [run_runner([*args, "--coordinator", addr, "--num-processes", "2",
                      "--process-id", str(i)], devices=4, wait=False) for i in range(2)]


@pytest.mark.slow
def test_two_processes_and_host_grader_train_like_one_and_checkpoint_across_them(tmp_path):
  ref_out, mp_out = tmp_path / "ref.npz", tmp_path / "mp.npz"
  common = ["--steps", "2", "--lr", str(LR)]
  procs = start_two_processes(["process", str(mp_out), "--meshes", "2,4,1",
                               "--ckpt", str(tmp_path / "ckpt"), *common])
  run_runner(["meshes", str(ref_out), "--meshes", "1,1,1", *common], devices=1)
  for proc in procs:
    finish(proc)
  ref, got = load(ref_out, "1,1,1"), load(mp_out, "2,4,1")
  # The host-grader path (sharded rollout_step, grader on host, sharded learn_step).
  split_out = tmp_path / "split.npz"
  run_runner(["meshes", str(split_out), "--meshes", "2,2,2", "--split", *common])
  assert_same_training(ref, load(split_out, "2,2,2"), 2, "host grader on (2,2,2)")
  np.testing.assert_array_equal(got["rows"], [0, 4])  # process 0 read only its half
  assert_same_training(ref, got, 2, "2 processes x 4 devices")
  np.testing.assert_array_equal(got["rng"], ref["rng"])
  # Saved by both processes from (2,4,1), restored by both onto (2,2,2).
  for name in [k for k in got if k.startswith("param2/")]:
    np.testing.assert_array_equal(got["restored/" + name[len("param2/"):]], got[name])


def test_memory_benchmark_divides_the_state_by_the_sharded_axes():
  import importlib.util
  spec = importlib.util.spec_from_file_location("memory", os.path.join(ROOT, "benchmarks", "memory.py"))
  memory = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(memory)
  rows = {(name, mesh): mib for name, _, mesh, mib in memory.table(["1,1,1", "8,1,1", "1,4,2"], 4096)}
  one, data, sharded = rows["small", "1,1,1"], rows["small", "8,1,1"], rows["small", "1,4,2"]
  assert data == one                                                   # data replicates
  np.testing.assert_allclose(one["opt_state"], 2 * one["params"], rtol=1e-3)   # mu and nu
  total = lambda m: sum(m.values())
  assert total(one) / 8 <= total(sharded) < total(one) / 7.5           # nearly all of it splits 8 ways


SEED_MESHES = ("1,1,1", "2,4,1", "1,4,2", "8,1,1")


@pytest.mark.slow
def test_seeds_vmapped_on_a_mesh_train_like_seeds_vmapped_on_one_device(tmp_path):
  out = tmp_path / "seeds.npz"
  run_runner(["seeds", str(out), "--meshes", "plain", *SEED_MESHES, "--steps", "3",
              "--lr", str(LR)])
  plain, one = load(out, "plain"), load(out, "1,1,1")
  # One device: StackedSeeds is the plain jit(vmap(train_step)), bit for bit.
  assert plain.keys() == one.keys()
  for key in plain:
    np.testing.assert_array_equal(one[key], plain[key], err_msg=key)
  losses = one["metric/loss"]  # [steps, seeds]
  assert losses.shape == (3, 3) and np.ptp(losses, axis=1).min() > 0  # the seeds differ
  for mesh in SEED_MESHES[1:]:
    got = load(out, mesh)
    assert_same_training(one, got, 3, f"3 seeds on {mesh}")
    np.testing.assert_array_equal(got["rng"], one["rng"])


@pytest.mark.slow
def test_seeds_vmapped_across_two_processes_train_like_one_device(tmp_path):
  ref_out, mp_out = tmp_path / "ref.npz", tmp_path / "mp.npz"
  common = ["--steps", "2", "--lr", str(LR)]
  procs = start_two_processes(["seeds", str(mp_out), "--meshes", "2,4,1", *common])
  run_runner(["seeds", str(ref_out), "--meshes", "plain", *common], devices=1)
  for proc in procs:
    finish(proc)
  assert_same_training(load(ref_out, "plain"), load(mp_out, "2,4,1"), 2,
                       "3 seeds on 2 processes x 4 devices")


@pytest.mark.slow
def test_a_reference_in_host_memory_trains_like_one_on_the_device():
  """mesh.ref_memory_kind=pinned_host: the learn step copies the reference in for its pass
  (beta > 0) and the new state's reference is still in host memory; the step equals the one
  with the reference on the device (CPU has the memory kinds too; TPU: tests/test_plan.py)."""
  import optax
  from focal import aggregators
  from focal.iteration import GRPOSettings, init_train_state, make_engine
  from focal.models.transformer import init_model
  from test_iteration import grade, hand_rollouts
  graphdef, params = init_model(CFG, jax.random.key(0))
  tx, agg = optax.sgd(0.1), aggregators.make("category_balanced")
  settings = GRPOSettings(group_size=4, max_new_tokens=8, eos_id=258, pad_id=256, beta=0.1)
  engine = make_engine(graphdef, tx, agg, settings)
  state = init_train_state(params, tx, agg, 8, 3, jax.random.key(1))
  batch, rollouts = make_batch(), hand_rollouts()
  scores = grade(np.repeat(batch.features, 4, 0), rollouts.tokens, rollouts.mask)
  mesh = sharding.make_mesh((1, 1, 1))
  out = {}
  for kind in ("device", "pinned_host"):
    state_sh = sharding.state_shardings(state, mesh, ref_memory_kind=kind)
    placed = sharding.put(state, state_sh)
    assert {x.sharding.memory_kind for x in jax.tree.leaves(placed.ref_params)} == {kind}
    step = sharding.shard_learn_step(engine.learn_step, mesh, state_sh,
                                     sharding.batch_shardings(batch, mesh))
    out[kind] = step(placed, batch, rollouts, scores, np.ones(scores.shape, bool))
    assert {x.sharding.memory_kind for x in jax.tree.leaves(out[kind][0].ref_params)} == {kind}
  jax.tree.map(np.testing.assert_array_equal, out["device"][0].params,
               out["pinned_host"][0].params)
  assert float(out["pinned_host"][1]["kl"]) == float(out["device"][1]["kl"])
