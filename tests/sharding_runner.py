"""Runs sharded GRPO scenarios in a fresh process for tests/test_sharding.py.

The tests start this script with XLA_FLAGS=--xla_force_host_platform_device_count=N
so that the pytest process itself keeps one CPU device. Each scenario writes its
results to an .npz file that the test compares.

  python tests/sharding_runner.py meshes OUT --meshes 1,1,1 8,1,1 --steps 3
  python tests/sharding_runner.py process OUT --coordinator 127.0.0.1:PORT --num-processes 2
      --process-id I --ckpt DIR
  python tests/sharding_runner.py checkpoint OUT --ckpt DIR
  python tests/sharding_runner.py seeds OUT --meshes plain 1,1,1 2,4,1 --steps 3
      [--coordinator 127.0.0.1:PORT --num-processes 2 --process-id I]
"""
from __future__ import annotations

import argparse
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from focal import aggregators, distributed, sharding  # noqa: E402
from focal.checkpoint import Checkpointer  # noqa: E402
from focal.models.transformer import ModelConfig, init_model  # noqa: E402
from focal.replicas import StackedSeeds  # noqa: E402
from focal.iteration import GRPOSettings, init_train_state, make_engine, make_optimizer  # noqa: E402
from test_iteration import EOS, PAD, grade, make_batch  # noqa: E402

# n_kv_heads = n_heads = 2 so that tensor=2 splits whole heads.
CFG = ModelConfig(vocab_size=260, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, head_dim=16,
                  d_ff=64, max_seq_len=64)
SETTINGS = GRPOSettings(group_size=4, max_new_tokens=6, eos_id=EOS, pad_id=PAD, beta=0.05, mu=1,
                        num_minibatches=2)
NUM_PROMPTS = 8
METRICS = ("loss", "reward_mean", "grad_norm", "kl", "response_length")


def setup(tx, seed=0):
  graphdef, params = init_model(CFG, jax.random.key(seed))
  agg = aggregators.make("category_balanced")
  state = init_train_state(params, tx, agg, num_prompts=NUM_PROMPTS, max_criteria=3,
                           rng=jax.random.key(1 + seed))
  return graphdef, state, make_engine(graphdef, tx, agg, SETTINGS, grader=grade)


class SeedSource:
  """Seed s's prompts at step t: make_batch's rows in an order drawn from (s, t)."""

  def __init__(self, seed):
    self.seed = seed

  def batch(self, step):
    idx = np.random.default_rng([self.seed, step]).permutation(NUM_PROMPTS)
    return jax.tree.map(lambda x: np.asarray(x)[idx], make_batch(NUM_PROMPTS)), idx


def flat(tree, prefix=""):
  """{'prefix/path': numpy array} over a tree of global arrays (gathered across processes)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    tree = multihost_utils.process_allgather(tree, tiled=True)
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {prefix + sharding.path_str(p): np.asarray(x) for p, x in leaves}


def host_graded_step(engine, mesh, state_sh, batch_sh):
  """rollout_step and learn_step jitted over the mesh around a grader run on the host (one process)."""
  rollout = sharding.shard_rollout_step(engine.rollout_step, mesh, state_sh, batch_sh)
  learn = sharding.shard_learn_step(engine.learn_step, mesh, state_sh, batch_sh)
  rows = sharding.batch_dim_sharding(mesh)

  def step(state, batch):
    state, rollouts = rollout(state, batch)
    features = np.repeat(np.asarray(batch.features), SETTINGS.group_size, axis=0)
    scores = np.asarray(grade(features, np.asarray(rollouts.tokens), np.asarray(rollouts.mask)))
    scores, valid = sharding.put((scores, np.ones(scores.shape, bool)), (rows, rows))
    return learn(state, batch, rollouts, scores, valid)

  return step


def run_mesh(shape, steps, setup_out, fsdp_min_size=0, split=False):
  """Trains `steps` GRPO iterations on a mesh from a host state; returns the flattened results.

  With SGD a parameter's change over the first step is -lr x its gradient, so
  `param0/`..`paramS/` compare gradients as well as parameters.
  """
  mesh = sharding.make_mesh(shape)
  _, host_state, engine = setup_out
  state_sh = sharding.state_shardings(host_state, mesh, fsdp_min_size=fsdp_min_size)
  # Each process reads only its own rows of the global batch.
  rows = distributed.process_rows(sharding.batch_dim_sharding(mesh), NUM_PROMPTS)
  local = distributed.process_slice(make_batch(NUM_PROMPTS), rows)
  batch_sh = sharding.batch_shardings(local, mesh, batch_size=NUM_PROMPTS)
  gbatch = sharding.put_process_batch(local, batch_sh, NUM_PROMPTS)
  state = sharding.put(host_state, state_sh)
  step = (host_graded_step(engine, mesh, state_sh, batch_sh) if split else
          sharding.shard_train_step(engine.train_step, mesh, state_sh, batch_sh))

  state, out = train_and_record(state, lambda state, t: step(state, gbatch), steps)
  out["rows"] = np.array([rows.start, rows.stop])
  # The state must come out in the shardings it went in with (no silent replication).
  assert_layout(state.params, state_sh.params)
  return mesh, state, out


def train_and_record(state, step, steps):
  """`steps` calls of step(state, t) -> (state, metrics); parameters before and after each
  (`param0/`..), the METRICS by step (`metric/`) and the final rng, flattened."""
  out = flat(state.params, "param0/")
  history = {k: [] for k in METRICS}
  for t in range(steps):
    state, metrics = step(state, t)
    for k in METRICS:
      history[k].append(flat(metrics[k])[""])
    out.update(flat(state.params, f"param{t + 1}/"))
  out.update({f"metric/{k}": np.stack(v) for k, v in history.items()})
  out["rng"] = flat(jax.random.key_data(state.rng))[""]
  return state, out


def assert_layout(tree, shardings):
  for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    assert got.sharding.is_equivalent_to(want, got.ndim), (got.sharding, want)


def scenario_meshes(args):
  results = {}
  common = setup(optax.sgd(args.lr))
  for text in args.meshes:
    shape = tuple(int(s) for s in text.split(","))
    _, _, out = run_mesh(shape, args.steps, common, split=args.split)
    results.update({f"{text}|{k}": v for k, v in out.items()})
  np.savez(args.out, **results)


def scenario_process(args):
  distributed.maybe_initialize(args.coordinator, args.num_processes, args.process_id)
  assert jax.process_count() == args.num_processes, jax.process_count()
  tx = optax.sgd(args.lr)
  common = setup(tx)
  _, state, out = run_mesh((2, 4, 1), args.steps, common)
  # Save across processes, restore onto another mesh shape.
  ckpt = Checkpointer(args.ckpt, keep=1)
  ckpt.save(args.steps, state, {"data_position": args.steps})
  ckpt.close()
  other = sharding.make_mesh((2, 2, 2))
  host_state = common[1]
  target = sharding.abstract(host_state, sharding.state_shardings(host_state, other, fsdp_min_size=0))
  restored, meta = Checkpointer(args.ckpt).restore(target)
  assert meta["data_position"] == args.steps
  out.update(flat(restored.params, "restored/"))
  if jax.process_index() == 0:
    np.savez(args.out, **{f"{args.meshes[0]}|{k}": v for k, v in out.items()})


def scenario_checkpoint(args):
  """Adam state with non-zero moments, saved under (8,1,1), restored under (2,2,2)."""
  tx = make_optimizer(1e-3)
  _, state, _ = setup(tx)
  grads = jax.tree.map(lambda p: jnp.sin(p * 100.0), state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                        step=jnp.int32(7))
  save_mesh, load_mesh = sharding.make_mesh((8, 1, 1)), sharding.make_mesh((2, 2, 2))
  saved = sharding.put(state, sharding.state_shardings(state, save_mesh, fsdp_min_size=0))
  ckpt = Checkpointer(args.ckpt, keep=1)
  ckpt.save(7, saved, {"data_position": 7})
  ckpt.close()
  _, fresh, _ = setup(tx)
  target_sh = sharding.state_shardings(fresh, load_mesh, fsdp_min_size=0)
  restored, _ = Checkpointer(args.ckpt).restore(sharding.abstract(fresh, target_sh))
  assert_layout(restored, target_sh)
  out = {}
  for name, tree in (("saved", state), ("restored", restored)):
    tree = tree.replace(rng=jax.random.key_data(tree.rng))
    out.update(flat(tree, name + "/"))
  # Opt-state moments must take their parameter's sharding (here: not replicated).
  mu = restored.opt_state[1][0].mu["layers"]["mlp"]["up_proj"]["kernel"][...]
  out["mu_spec"] = np.array(str(mu.sharding.spec))
  np.savez(args.out, **out)


def seed_setups(tx, seeds):
  """What `StackedSeeds` reads of each seed's components.Setup: source, engine, state, grader."""
  built = [setup(tx, s) for s in seeds]
  engine = built[0][2]  # one graphdef, so one engine serves every seed
  return [types.SimpleNamespace(source=SeedSource(s), engine=engine, state=state,
                                grader=types.SimpleNamespace(fused=True))
          for s, (_, state, _) in zip(seeds, built)]


def plain_vmapped(setups):
  """Seeds stacked on the default device and stepped by jit(vmap(train_step)): how seeds
  were vmapped before they could be placed on a mesh."""
  stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
  step_fn = jax.jit(jax.vmap(setups[0].engine.train_step), donate_argnums=(0,))
  step = lambda state, t: step_fn(state, stack([s.source.batch(t)[0] for s in setups]))
  return stack([s.state for s in setups]), step


def scenario_seeds(args):
  """Seeds 0-2 stacked and vmapped: `plain` (see plain_vmapped), or `StackedSeeds` on each
  mesh, whose stacked and per-seed states must keep their layouts."""
  if args.coordinator:
    distributed.maybe_initialize(args.coordinator, args.num_processes, args.process_id)
  setups = seed_setups(optax.sgd(args.lr), (0, 1, 2))
  results = {}
  for text in args.meshes:
    if text == "plain":
      state, out = train_and_record(*plain_vmapped(setups), args.steps)
    else:
      shape = tuple(int(v) for v in text.split(","))
      config = ml_collections.ConfigDict({"mesh": {"shape": shape, "ref_memory_kind": "device"},
                                          "data": {"prompts_per_step": NUM_PROMPTS}})
      replicas = StackedSeeds(config, setups)
      state = replicas.combine([replicas.restore_target(s.state) for s in setups])
      state, out = train_and_record(state, lambda state, t: replicas.step(state, t)[:2],
                                    args.steps)
      assert_layout(state, replicas.state_sh)
      assert_layout(replicas.take(state, 1), replicas.seed_sh)
    results.update({f"{text}|{k}": v for k, v in out.items()})
  if jax.process_index() == 0:
    np.savez(args.out, **results)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("scenario", choices=("meshes", "process", "checkpoint", "seeds"))
  parser.add_argument("out")
  parser.add_argument("--meshes", nargs="*", default=["1,1,1"])
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--lr", type=float, default=0.5)
  parser.add_argument("--coordinator")
  parser.add_argument("--num-processes", type=int)
  parser.add_argument("--process-id", type=int)
  parser.add_argument("--ckpt")
  parser.add_argument("--split", action="store_true", help="grade on the host between "
                      "rollout_step and learn_step instead of train_step")
  args = parser.parse_args()
  {"meshes": scenario_meshes, "process": scenario_process,
   "checkpoint": scenario_checkpoint, "seeds": scenario_seeds}[args.scenario](args)


if __name__ == "__main__":
  main()
