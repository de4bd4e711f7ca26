"""LoRA (focal.models.lora): the adapted forward is the base plus (alpha / r) A B, only adapters
train, the reference is the base, and the base never reaches a checkpoint."""
import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from focal import aggregators, sharding, update
from focal.checkpoint import Checkpointer
from focal.iteration import init_train_state, make_engine, make_optimizer, policy_params
from focal.models import lora
from focal.models.transformer import ModelConfig, forward, init_model, token_logprobs
from focal.partition_rules import path_str
from tests.test_iteration import EOS, PAD, SETTINGS, grade, make_batch

# Two layers and q/k/v biases (Qwen2): the stacked adapters and a bias beside them are covered.
CFG = ModelConfig(vocab_size=260, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16,
                  d_ff=64, max_seq_len=64, qkv_bias=True)
RANK, ALPHA = 4, 8.0


def flat(state) -> dict:
  return {path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state)}


def adapted(targets=lora.DEFAULT_TARGETS, seed=0, **kw):
  """(base graphdef, base params, LoRA graphdef, frozen base, adapters) of CFG."""
  graphdef, params = init_model(CFG, jax.random.key(seed))
  config = lora.LoRAConfig(rank=RANK, alpha=ALPHA, targets=targets, **kw)
  return (graphdef, params, *lora.attach(config, graphdef, params, jax.random.key(seed + 1)))


def with_random_b(adapters, seed=3, std=0.05):
  """Adapters whose every B is drawn (a fresh adapter's is zero, and would test nothing)."""
  keys = iter(jax.random.split(jax.random.key(seed), 64))
  return jax.tree_util.tree_map_with_path(
      lambda p, x: std * jax.random.normal(next(keys), x.shape) if "lora_b" in path_str(p)
      else x, adapters)


def tokens():
  rng = np.random.default_rng(0)
  t = jnp.asarray(rng.integers(0, 256, (2, 7)), jnp.int32)
  mask = jnp.asarray([[False, True, True, True, True, True, True], [True] * 7])
  from focal.models.transformer import positions_from_mask
  return t, positions_from_mask(mask), mask


def test_rank_zero_changes_nothing():
  graphdef, params = init_model(CFG, jax.random.key(0))
  out = lora.attach(lora.LoRAConfig(), graphdef, params, jax.random.key(1))
  assert out[0] is graphdef and out[1] is None and out[2] is params


def test_fresh_adapters_leave_the_model_unchanged():
  graphdef, params, lgraph, base, adapters = adapted()
  t, pos, mask = tokens()
  np.testing.assert_array_equal(forward(graphdef, params, t, pos, mask)[0],
                                forward(lgraph, lora.combine(base, adapters), t, pos, mask)[0])


def test_forward_equals_base_plus_scaled_b_a_by_hand():
  """Kernels merged in numpy, W + (alpha / r) A B per layer, in a model without adapters."""
  graphdef, params, lgraph, base, adapters = adapted()
  adapters = with_random_b(adapters)
  a = flat(adapters)
  merged = {}
  for path, w in flat(params).items():
    stem = path[:-len("kernel")]
    if stem + "lora_a" in a:
      delta = np.einsum("lir,lro->lio", a[stem + "lora_a"].astype(np.float64),
                        a[stem + "lora_b"].astype(np.float64))
      w = (w.astype(np.float64) + ALPHA / RANK * delta).astype(np.float32)
    merged[path] = w
  assert len(a) == 2 * 7 * 1  # q, k, v, o, gate, up, down: A and B each (stacked over layers)
  hand = jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(merged[path_str(p)]), params)
  t, pos, mask = tokens()
  expected = forward(graphdef, hand, t, pos, mask)[0]
  got = forward(lgraph, lora.combine(base, adapters), t, pos, mask)[0]
  np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
  # The adapters move the logits far more than that tolerance.
  assert float(jnp.max(jnp.abs(got - forward(graphdef, params, t, pos, mask)[0]))) > 1e-2
  # merge_adapters folds them into the kernels of the rank-0 architecture the same way.
  mgraph, mparams = lora.merge_adapters(lgraph, lora.combine(base, adapters))
  assert mgraph == graphdef
  np.testing.assert_allclose(forward(mgraph, mparams, t, pos, mask)[0], expected, atol=1e-6,
                             rtol=0)


def test_targets_pick_the_kernels():
  *_, adapters = adapted(targets=r"layers/attn/(q|v)_proj/kernel")
  assert sorted(flat(adapters)) == [f"layers/attn/{m}_proj/lora_{f}" for m in "qv" for f in "ab"]
  shapes = {k: v.shape for k, v in flat(adapters).items()}
  assert shapes["layers/attn/q_proj/lora_a"] == (CFG.n_layers, CFG.d_model, RANK)
  assert shapes["layers/attn/v_proj/lora_b"] == (CFG.n_layers, RANK, CFG.head_dim)
  with pytest.raises(ValueError, match="matches no projection kernel"):
    adapted(targets="embed")


@pytest.mark.parametrize("field, value, message", [
    ("rank", -1, "rank"), ("alpha", 0.0, "alpha"), ("dropout", 0.1, "dropout"),
    ("targets", "layers/(", "regular expression")])
def test_bad_settings_fail_naming_the_field(field, value, message):
  with pytest.raises(ValueError, match=message):
    lora.LoRAConfig(**{"rank": 4, field: value})


def lora_state(beta=0.05, train_embeddings=False):
  _, params, lgraph, base, adapters = adapted(train_embeddings=train_embeddings)
  tx = make_optimizer(1e-2)
  agg = aggregators.make("category_balanced")
  # One update per step (the default single pass): a compile of a few seconds.
  settings = dataclasses.replace(SETTINGS, beta=beta, mu=1, num_minibatches=1)
  state = init_train_state(adapters, tx, agg, num_prompts=8, max_criteria=3,
                           rng=jax.random.key(1), reference=beta > 0, base=base)
  return params, lgraph, state, make_engine(lgraph, tx, agg, settings, grader=grade)


def test_a_learn_step_changes_only_the_adapters():
  """Parameter by parameter: the base is bit-identical and every B moved, while every A kept
  its draw (its gradient x^T (g B^T) is zero while B is), and the optimizer holds moments of
  the adapters alone."""
  params, _, state, engine = lora_state()
  assert state.ref_params is None  # the base is the reference: no copy
  assert jax.tree.structure(state.opt_state[1][0].mu) == jax.tree.structure(state.params)
  new, metrics = jax.jit(engine.train_step)(state, make_batch())
  assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["kl"]))
  before, after = flat(policy_params(state)), flat(policy_params(new))
  assert before.keys() == after.keys()
  for path in before:
    moved = not np.array_equal(before[path], after[path])
    assert moved == path.endswith("/lora_b"), path
  for path, value in flat(params).items():  # the frozen base is the model it started from
    np.testing.assert_array_equal(after[path], value)


def test_the_kl_reference_is_the_base_model():
  params, lgraph, state, _ = lora_state()
  graphdef, _ = init_model(CFG, jax.random.key(0))
  state = state.replace(params=with_random_b(state.params))
  t, _, mask = tokens()
  base_logp = token_logprobs(graphdef, params, t, mask)
  ref_logp = token_logprobs(lgraph, update.reference_params(state), t, mask)
  np.testing.assert_array_equal(ref_logp, base_logp)
  policy_logp = token_logprobs(lgraph, policy_params(state), t, mask)
  assert float(jnp.max(jnp.abs(policy_logp - base_logp))) > 1e-3


@pytest.mark.slow  # about 20 s: a step compiled on another parameter structure
def test_trained_embeddings_keep_their_initial_values_for_the_reference():
  params, lgraph, state, engine = lora_state(train_embeddings=True)
  assert sorted(flat(state.ref_params)) == ["embed"]
  assert "embed" in flat(state.params) and "embed" not in flat(state.base)
  new, _ = jax.jit(engine.train_step)(state, make_batch())
  assert not np.array_equal(flat(new.params)["embed"], flat(params)["embed"])
  np.testing.assert_array_equal(flat(update.reference_params(new))["embed"],
                                flat(params)["embed"])


def test_checkpoints_hold_the_adapters_not_the_base(tmp_path):
  _, _, state, _ = lora_state()
  trained = state.replace(params=with_random_b(state.params))
  ckpt = Checkpointer(str(tmp_path), keep=1, async_save=False)
  ckpt.save(1, trained)
  stored = ckpt.stored_tree(1)
  assert stored["base"] is None
  restored, _ = ckpt.restore(state)
  ckpt.close()
  assert restored.base is state.base  # the target's, loaded once
  jax.tree.map(np.testing.assert_array_equal, restored.params, trained.params)


@flax.struct.dataclass
class OldState:  # TrainState before it had `base`
  step: object
  params: object
  opt_state: object
  ref_params: object
  agg_state: object
  rng: object


def test_checkpoints_written_before_lora_restore(tmp_path):
  graphdef, params = init_model(CFG, jax.random.key(0))
  tx = make_optimizer(1e-3)
  state = init_train_state(params, tx, aggregators.make("category_balanced"), num_prompts=8,
                           max_criteria=3, rng=jax.random.key(1), reference=False)
  old = OldState(*(getattr(state, k) for k in OldState.__dataclass_fields__))
  ckpt = Checkpointer(str(tmp_path), keep=1, async_save=False)
  ckpt.save(1, old)
  restored, _ = ckpt.restore(state)
  ckpt.close()
  assert restored.base is None
  jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 4, 1), (2, 2, 2)])
def test_adapters_and_base_have_shardings_on_any_mesh(shape):
  """x A B splits like x W: B's output dim over 'tensor' for column-parallel W, A's input dim
  for row-parallel W; the rank dim is never split."""
  _, _, state, _ = lora_state()
  mesh = sharding.abstract_mesh(shape)
  leaves = jax.tree_util.tree_flatten_with_path(
      sharding.param_specs(state.params, mesh),
      is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))[0]
  specs = {path_str(p): tuple(s) for p, s in leaves}
  assert specs["layers/attn/q_proj/lora_b"][2] == "tensor"
  assert specs["layers/mlp/down_proj/lora_a"][1] == "tensor"
  for path, spec in specs.items():  # the rank dimension
    rank_dim = 2 if path.endswith("lora_a") else 1
    assert spec[rank_dim] is None, path
  shardings = sharding.state_shardings(state, mesh)
  assert jax.tree.structure(shardings.base) == jax.tree.structure(state.base)


def lora_config(**overrides):
  from tests.test_loop import tiny_config
  return tiny_config(**{"model.lora.rank": RANK, "model.lora.alpha": ALPHA,
                        "optimizer.learning_rate": 3e-3, **overrides})


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
  from focal import loop
  workdir = str(tmp_path_factory.mktemp("lora_run"))
  config = lora_config(total_steps=2, eval_every=2, checkpoint_every=2)
  return config, workdir, loop.run(config, workdir, progress=False)


@pytest.mark.slow  # the lora_run fixture: a tiny run, about 40 s
def test_a_lora_run_checkpoints_only_what_it_trains(lora_run):
  from focal.rundir import RunDir
  _, workdir, final = lora_run
  assert final["step"] == 2 and np.isfinite(final["eval/mean_rubric_reward"])
  ckpt = RunDir(workdir).checkpointer(keep=None, async_save=False)
  stored = ckpt.stored_tree(2)
  ckpt.close()
  assert stored["base"] is None and stored["ref_params"] is None
  names = {path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(
      stored["params"], is_leaf=lambda x: x is not None and not isinstance(x, dict))}
  assert names and all("/lora_" in n for n in names), names


@pytest.mark.slow
def test_the_merged_export_has_the_trained_policy_logits(lora_run, tmp_path):
  """experiments.export folds the adapters into the kernels: a standard checkpoint whose
  logits are the trained base + adapters' (the base rebuilt from the run's config)."""
  from focal import evaluation
  from focal.eval_build import export_run
  from focal.models.pretrained import load_pretrained
  config, workdir, _ = lora_run
  step, files = export_run(workdir, str(tmp_path / "hf"), peft_out=str(tmp_path / "peft"))
  assert step == 2 and "adapter_model.safetensors" in files
  # A scale's warm-started base goes beside the adapters, which name it as their base.
  import json
  peft_config = json.load(open(tmp_path / "peft" / "adapter_config.json"))
  assert peft_config["base_model_name_or_path"] == str(tmp_path / "peft" / "base")
  assert (tmp_path / "peft" / "base" / "model.safetensors").exists()
  setup = evaluation.build_for_eval(config)
  params, _ = evaluation.restore_params(setup, workdir)
  assert any("/lora_" in p for p in flat(params))
  pre = load_pretrained(str(tmp_path / "hf"))
  assert not any("lora" in p for p in flat(pre.params))
  t, pos, mask = tokens()
  np.testing.assert_allclose(forward(pre.graphdef, pre.params, t, pos, mask)[0],
                             forward(setup.graphdef, params, t, pos, mask)[0], atol=1e-5, rtol=0)


def _eval_rows(workdir):
  import json
  import os
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if "eval/mean_rubric_reward" in r]


@pytest.mark.slow  # two 20-step runs: about 3 min
def test_a_tiny_lora_run_learns_and_resumes_exactly(tmp_path):
  """The default run's protocol, shrunk: a warm-started base, then GRPO on adapters alone; the
  held-out mean rubric reward rises (greedy and sampled). Stopped at step 10 and resumed, the
  run repeats the uninterrupted one's evaluations exactly."""
  from focal import loop
  over = {"warm_start.steps": 100, "warm_start.cache_dir": str(tmp_path / "ws"),
          "data.eval_prompts_per_task": 16, "data.prompts_per_step": 8, "grpo.group_size": 8,
          "eval.num_samples": 4, "eval_every": 10, "checkpoint_every": 10,
          "model.lora.rank": 8, "model.lora.alpha": 32.0}
  loop.run(lora_config(total_steps=20, **over), str(tmp_path / "whole"), progress=False)
  rows = _eval_rows(str(tmp_path / "whole"))
  assert [r["step"] for r in rows] == [0, 10, 20]
  for key in ("eval/mean_rubric_reward", "eval_sampled/mean_rubric_reward"):
    assert rows[-1][key] > rows[0][key] + 3.0, (key, [r[key] for r in rows])
  loop.run(lora_config(total_steps=10, **over), str(tmp_path / "split"), progress=False)
  loop.run(lora_config(total_steps=20, **over), str(tmp_path / "split"), progress=False)
  resumed = _eval_rows(str(tmp_path / "split"))
  strip = lambda r: {k: v for k, v in r.items() if "seconds" not in k}
  assert [strip(r) for r in resumed] == [strip(r) for r in rows]


def test_the_plan_holds_the_base_apart_in_the_compute_dtype():
  """experiments.plan's abstract state for the HealthBench recipe on a tiny Qwen3 shape with
  adapters: the optimizer's parameters are the adapters, the base is bfloat16 (model.dtype)
  and no reference copy is kept though beta = 0.1."""
  from focal.plan.setup import abstract_setup
  from tests.test_plan import tiny_config as plan_config
  config = plan_config()
  config.model.lora.rank = 4
  config.model.dtype = "bfloat16"
  state = abstract_setup(config, num_prompts=8, max_criteria=3).state
  assert config.grpo.beta > 0 and state.ref_params is None
  paths = lambda tree: [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
  assert paths(state.params) and all("/lora_" in p for p in paths(state.params))
  assert not any("lora" in p for p in paths(state.base))
  assert {x.dtype for x in jax.tree.leaves(state.base)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}


class _Source:
  def batch(self, step):
    del step
    return make_batch(), np.arange(3)


@pytest.mark.slow  # about 40 s: three seeds' step compiled vmapped and alone
def test_vmapped_seeds_share_one_base():
  """StackedSeeds with three seeds' adapters on one (checkpoint-like) base: the base is held
  once, unstacked, and each seed trains as it would alone."""
  import types
  import ml_collections
  from focal.replicas import StackedSeeds
  _, params, lgraph, base, _ = adapted()
  tx = make_optimizer(1e-2)
  agg = aggregators.make("category_balanced")
  engine = make_engine(lgraph, tx, agg, SETTINGS, grader=grade)
  states = []
  for seed in range(3):
    config = lora.LoRAConfig(rank=RANK, alpha=ALPHA)
    _, _, adapters = lora.attach(config, *init_model(CFG, jax.random.key(0)),
                                 jax.random.key(10 + seed))
    states.append(init_train_state(adapters, tx, agg, num_prompts=8, max_criteria=3,
                                   rng=jax.random.key(seed), base=base))
  setups = [types.SimpleNamespace(source=_Source(), engine=engine, state=s,
                                  grader=types.SimpleNamespace(fused=True)) for s in states]
  config = ml_collections.ConfigDict({"mesh": {"shape": (1, 1, 1), "ref_memory_kind": "device"},
                                      "data": {"prompts_per_step": 3}})
  replicas = StackedSeeds(config, setups)
  assert replicas.shared_base
  stacked = replicas.combine([replicas.restore_target(s.state) for s in setups])
  alone = jax.jit(engine.train_step)
  for t in range(2):
    stacked, _, _ = replicas.step(stacked, t)
    states = [alone(s, make_batch())[0] for s in states]
  assert jax.tree.leaves(stacked.base)[0].shape == jax.tree.leaves(base)[0].shape
  for i, state in enumerate(states):
    mine = replicas.take(stacked, i)
    # vmapped and single matmuls round differently; AdamW scales that up on tiny gradients
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 mine.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, mine.base, base)


def test_the_peft_layout_rebuilds_the_merged_checkpoint(tmp_path):
  """adapter_model.safetensors in peft's names and [out, in] layout: base weight +
  (lora_alpha / r) lora_B @ lora_A, computed from the files alone, is the merged export's."""
  import json
  from focal.models import peft_export
  from focal.models.hf_export import export_checkpoint
  from focal.models.safetensors_io import load_arrays, read_header, read_tensor
  graphdef, params, lgraph, base, adapters = adapted()
  full = lora.combine(base, with_random_b(adapters))
  export_checkpoint(str(tmp_path / "base"), CFG, params)
  export_checkpoint(str(tmp_path / "merged"), CFG, lora.merge_adapters(lgraph, full)[1])
  files = peft_export.export_adapters(str(tmp_path / "peft"), CFG, full,
                                      lora.LoRAConfig(rank=RANK, alpha=ALPHA), base="the-base")
  assert files == ["adapter_config.json", "adapter_model.safetensors"]
  cfg = json.load(open(tmp_path / "peft" / "adapter_config.json"))
  assert (cfg["peft_type"], cfg["r"], cfg["lora_alpha"], cfg["base_model_name_or_path"]) == (
      "LORA", RANK, ALPHA, "the-base")
  assert cfg["target_modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                          "up_proj", "down_proj"])
  base_w, merged = load_arrays(str(tmp_path / "base")), load_arrays(str(tmp_path / "merged"))
  header = read_header(str(tmp_path / "peft" / "adapter_model.safetensors"))
  peft = {name: read_tensor(info) for name, info in header.items()}
  assert len(peft) == 2 * 7 * CFG.n_layers
  rebuilt = 0
  for name, w in base_w.items():
    stem = "base_model.model." + name[:-len(".weight")]
    if stem + ".lora_A.weight" in peft:
      a, b = peft[stem + ".lora_A.weight"], peft[stem + ".lora_B.weight"]
      assert a.shape == (RANK, w.shape[1]) and b.shape == (w.shape[0], RANK)
      w = w.astype(np.float64) + ALPHA / RANK * (b.astype(np.float64) @ a)
      rebuilt += 1
    np.testing.assert_allclose(merged[name], w, atol=1e-6, rtol=0, err_msg=name)
  assert rebuilt == 7 * CFG.n_layers


PEER_PYTHON = "/work/venvs/trl/bin/python"  # STACK.md's TRL environment, plus peft


def _peer_with_peft():
  import os
  import subprocess
  if not os.path.exists(PEER_PYTHON):
    return None
  env = {**os.environ, "PYTHONPATH": os.environ.get("FOCAL_PEFT_PATH", "")}
  found = subprocess.run([PEER_PYTHON, "-c", "import peft, transformers, torch"], env=env,
                         capture_output=True)
  return env if found.returncode == 0 else None


@pytest.mark.slow
def test_peft_loads_the_adapters_and_gives_the_trained_logits(tmp_path):
  """In the peer environment (torch + transformers + peft; FOCAL_PEFT_PATH may add peft to its
  path): PeftModel on the exported base gives our adapted model's logits, as does the merged
  export loaded by transformers."""
  import os
  import subprocess
  from focal.models import peft_export
  from focal.models.hf_export import export_checkpoint
  env = _peer_with_peft()
  if env is None:
    pytest.skip(f"no torch + transformers + peft at {PEER_PYTHON}")
  _, params, lgraph, base, adapters = adapted()
  full = lora.combine(base, with_random_b(adapters))
  dirs = {k: str(tmp_path / k) for k in ("base", "merged", "peft")}
  export_checkpoint(dirs["base"], CFG, params)
  export_checkpoint(dirs["merged"], CFG, lora.merge_adapters(lgraph, full)[1])
  peft_export.export_adapters(dirs["peft"], CFG, full, lora.LoRAConfig(rank=RANK, alpha=ALPHA),
                              base=dirs["base"])
  t = np.random.default_rng(0).integers(0, 256, (2, 9)).astype(np.int64)
  np.save(tmp_path / "tokens.npy", t)
  here = os.path.dirname(os.path.abspath(__file__))
  run = subprocess.run([PEER_PYTHON, os.path.join(here, "peft_parity.py"), dirs["base"],
                        dirs["peft"], dirs["merged"], str(tmp_path / "tokens.npy"),
                        str(tmp_path / "out.npz")], env=env, capture_output=True, text=True,
                       timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  mask = jnp.ones(t.shape, bool)
  pos = jnp.broadcast_to(jnp.arange(t.shape[1]), t.shape)
  ours = np.asarray(forward(lgraph, full, jnp.asarray(t, jnp.int32), pos, mask)[0])
  np.testing.assert_allclose(out["peft"], ours, atol=1e-4, rtol=0)
  np.testing.assert_allclose(out["merged"], ours, atol=1e-4, rtol=0)
  assert np.abs(out["base"] - ours).max() > 1e-2  # the adapters matter


@pytest.mark.slow  # about 30 s
def test_a_judged_lora_run_on_a_checkpoint_trains_resumes_and_keeps_the_base(tmp_path):
  """The papers' setting in miniature with adapters: a tiny Qwen3 checkpoint as the frozen base
  and KL reference (beta > 0), an LLM judge on 127.0.0.1 (rollout -> host grader -> learn),
  evaluation, then a resume; the base stays the checkpoint's weights throughout."""
  from focal import components, loop
  from focal.graders.openai_server import ChatServer
  from focal.models.pretrained import load_pretrained
  from focal.rundir import RunDir
  from tests.chat_checkpoint import make_chat_checkpoint
  from tests.test_real_data_loop import coin_judge, healthbench_config
  checkpoint = make_chat_checkpoint(str(tmp_path / "qwen3-tiny"))
  server = ChatServer(coin_judge, models=("coin",)).start()
  try:
    config = healthbench_config(tmp_path, checkpoint, server)
    config.model.lora.rank = RANK
    config.grpo.beta = 0.1
    workdir = str(tmp_path / "run")
    loop.run(config, workdir, progress=False)
    config.total_steps = 4
    final = loop.run(config, workdir, progress=False)
    setup = components.build(config, progress=False)  # asks the judge first
  finally:
    server.close()
  rows = RunDir(workdir).rows()
  assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
  assert all(np.isfinite(r["train/kl"]) for r in rows[1:]) and final["step"] == 4
  ckpt = RunDir(workdir).checkpointer(keep=None, async_save=False)
  state, _ = ckpt.restore(setup.state)
  ckpt.close()
  loaded = flat(load_pretrained(checkpoint).params)
  assert flat(state.base).keys() <= loaded.keys()
  for path, value in flat(state.base).items():
    np.testing.assert_array_equal(value, loaded[path])
  assert any(np.abs(v).max() > 0 for k, v in flat(state.params).items() if k.endswith("lora_b"))
