"""Every command in docs/SCALING.md and in the paper configs' docstrings runs here, shrunk, on
simulated CPU devices, so that a documented command cannot rot.

The commands are read from the documents themselves (tests/doc_commands.py). Each must be in
a RUNS entry (or NOT_RUN, with the reason), which says how it runs on this CPU:
  * on as many simulated devices as its mesh names (8), or as the one CPU its preset is for;
    a multi-host command as 2 processes of 4 devices joined by jax.distributed on 127.0.0.1,
    their ranks from the FOCAL_* variables or, for FOCAL_DISTRIBUTED=auto, from an emulated
    SLURM step (JAX's own detection);
  * the flags appended to shrink it (tiny model, 2 steps, no warm-start cache) and the slice
    of its grid it trains;
  * local stand-ins for what the user brings, replacing the documented values: a Hugging
    Face checkpoint (tests/chat_checkpoint.py), rubric data (tests/data/*_tiny.jsonl), a judge
    served on 127.0.0.1, coordinator node0:1234 -> 127.0.0.1, absolute workdirs made relative.
Every command runs in a scratch folder whose configs/ and benchmarks/ link to the checkout,
with HOME there too, so nothing touches ~/.cache; train.py is the docs' Python block.
test_every_documented_command_is_covered fails on a documented command missing here.
"""
from __future__ import annotations

import copy
import dataclasses
import glob
import importlib.util
import json
import os
import site
import socket
import subprocess
import sys
import time

import pytest

from doc_commands import document_commands, markdown_block, words
from focal.rundir import RunDir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
SCALING = "docs/SCALING.md"
PAPER = sorted(glob.glob(os.path.join(REPO, "configs", "paper", "*.py")))
DOCS = [SCALING, "configs/judge_demo.py", *(os.path.relpath(p, REPO) for p in PAPER)]
STEPS = 2
SYNTHETIC = (f"--config.total_steps={STEPS}", f"--config.eval_every={STEPS}",
             f"--config.checkpoint_every={STEPS}", "--config.log_every=1",
             "--config.warm_start.steps=2", "--config.warm_start.batch_size=8",
             "--config.warm_start.cache_dir=", "--config.task=keywords",
             "--config.data.train_prompts_per_task=16", "--config.data.eval_prompts_per_task=2",
             "--config.grpo.group_size=2", "--config.grpo.max_new_tokens=8",
             "--config.eval.num_samples=1")
# The paper presets on a checkpoint, rubric data and a judge; 8 prompts per step fits (1,8,1).
JUDGED = (f"--config.total_steps={STEPS}", f"--config.eval_every={STEPS}",
          f"--config.checkpoint_every={STEPS}", "--config.log_every=1",
          "--config.data.max_prompt_tokens=256", "--config.data.eval_fraction=0.5",
          "--config.data.prompts_per_step=8", "--config.grpo.group_size=2",
          "--config.grpo.max_new_tokens=8", "--config.eval.num_samples=1",
          # the presets' memory settings, scaled to 16 rollouts: two micro-batches of 8
          "--config.grpo.micro_batch_size=8", "--config.grpo.rollout_micro_batch_size=16")
TO_TINY = (("--only=model=base", "--only=model=tiny"),)


@dataclasses.dataclass(frozen=True)
class Run:
  """Documented commands that run together here, and how they are shrunk."""
  doc: str                          # the document that shows them
  commands: tuple[str, ...]         # their keys; one ending in '&' starts first, in the background
  devices: int = 1                  # simulated CPU devices per process
  processes: int = 1                # >1: joined by jax.distributed on 127.0.0.1
  rank_lines: bool = False          # command i is process i's line (else all run on every process)
  slurm: bool = False               # ranks from an emulated SLURM step (FOCAL_DISTRIBUTED=auto)
  shrink: tuple[str, ...] = ()      # appended to experiments.train / .sweep ({name}: a stand-in)
  swap: tuple[tuple[str, str], ...] = ()  # (documented word, word run here)
  same_flags_as: str = ""           # a documented command whose flags it takes ("same flags")
  runs: int = 1                     # experiments.sweep: grid points the slice trains
  judge: bool = False               # serve a judge on 127.0.0.1 for the base_url flags
  data: str = ""                    # tests/data file for --config.data.path
  checkpoint: bool = False          # tests/chat_checkpoint.py's Qwen3 for --config.model.checkpoint
  slow: bool = True
  known_issue: str = ""             # a log check that fails today, and why (then it xfails)


TRAIN_8 = ("python -m experiments.train --config.mesh.shape=(1,8,1) "
           "--config.data.prompts_per_step=16")
HEALTHBENCH_TRAIN = (
    "python -m experiments.train --config=configs/paper/pow3r_healthbench.py "
    "--config.model.checkpoint=/ckpts/Qwen3-4B-Instruct "
    "--config.data.path=/data/healthbench/2025-05-07-06-14-12_oss_eval.jsonl "
    "--config.grader.judge.base_url=https://api.openai.com/v1 "
    "--config.grader.judge.model=gpt-5.4-nano "
    "--config.eval.judge.base_url=https://api.openai.com/v1 --config.eval.judge.model=gpt-5.4-mini "
    "--config.mesh.shape=(1,8,1) --workdir=runs/pow3r_healthbench")
HEALTHBENCH_LORA_TRAIN = (
    "python -m experiments.train --config=configs/paper/pow3r_healthbench.py:lora "
    "--config.model.checkpoint=/ckpts/Qwen3-4B-Instruct "
    "--config.data.path=/data/healthbench/2025-05-07-06-14-12_oss_eval.jsonl "
    "--config.grader.judge.base_url=https://api.openai.com/v1 "
    "--config.grader.judge.model=gpt-5.4-nano "
    "--config.eval.judge.base_url=https://api.openai.com/v1 --config.eval.judge.model=gpt-5.4-mini "
    "--workdir=runs/pow3r_healthbench_lora")
MULTI_HOST_ENV = "FOCAL_COORDINATOR=node0:1234 FOCAL_NUM_PROCESSES=2"
RUNS = {
    "jax_devices": Run(SCALING, ("python -c import jax; print(jax.devices())",), devices=8,
                       slow=False),
    "train_py_8_devices": Run(SCALING, (
        "python train.py",
        "XLA_FLAGS=--xla_force_host_platform_device_count=8 python train.py"), devices=8),
    "train_mesh_1_8_1": Run(SCALING, (TRAIN_8, TRAIN_8 + " --workdir=runs/tpu"), devices=8,
                            shrink=SYNTHETIC),
    "sweep_vmapped_seeds_1_8_1": Run(SCALING, (
        "python -m experiments.sweep --config=configs/paper/focal.py:full "
        "--workdir=results/focal_full --only=model=base --config.mesh.shape=(1,8,1) "
        "--config.data.prompts_per_step=16",), devices=8, swap=TO_TINY, runs=3,
        shrink=SYNTHETIC + ("--only=task=keywords", "--only=aggregator.name=focal")),
    "train_py_2_processes": Run(SCALING, (
        f"{MULTI_HOST_ENV} FOCAL_PROCESS_ID=0 python train.py",
        f"{MULTI_HOST_ENV} FOCAL_PROCESS_ID=1 python train.py"), devices=4, processes=2,
        rank_lines=True),
    "train_py_2_processes_auto": Run(SCALING, (
        "gcloud compute tpus tpu-vm ssh $TPU --zone $ZONE --worker=all --command=cd focal && "
        "pip install -e \".[tpu]\" && FOCAL_DISTRIBUTED=auto python train.py",
        "FOCAL_DISTRIBUTED=auto srun --nodes=2 --ntasks-per-node=1 python train.py"),
        devices=4, processes=2, slurm=True),
    "sweep_and_eval_2_processes": Run(SCALING, (
        f"{MULTI_HOST_ENV} FOCAL_PROCESS_ID=$RANK python -m experiments.sweep "
        "--config=configs/paper/focal.py:full --workdir=/shared/focal_full --only=model=base "
        "--only=task=keywords --config.mesh.shape=(2,8,1) --config.data.prompts_per_step=16",
        f"{MULTI_HOST_ENV} FOCAL_PROCESS_ID=$RANK python -m experiments.eval "
        "--workdir=/shared/focal_full/agg=focal,model=base,seed=0,task=keywords"),
        devices=4, processes=2, runs=3, shrink=SYNTHETIC + ("--only=aggregator.name=focal",),
        swap=TO_TINY + (("--config.mesh.shape=(2,8,1)", "--config.mesh.shape=(2,4,1)"),
                        ("--workdir=/shared/focal_full/agg=focal,model=base,seed=0,task=keywords",
                         "--workdir=shared/focal_full/agg=focal,model=tiny,seed=0,task=keywords"))),
    "memory_table": Run(SCALING, ("python benchmarks/memory.py",)),
    "focal_paper_sweep": Run("configs/paper/focal.py", (
        "python -m experiments.sweep --config=configs/paper/focal.py --workdir=runs/focal_paper",),
        shrink=SYNTHETIC + ("--only=aggregator.name=focal", "--only=seed=0")),
    "focal_paper_train": Run("configs/paper/focal.py", (
        "python -m experiments.train --config=configs/paper/focal.py --workdir=runs/focal_seed0",),
        shrink=SYNTHETIC),
    "focal_full_slice": Run("configs/paper/focal.py", (
        "python -m experiments.sweep --config=configs/paper/focal.py:full "
        "--workdir=results/focal_full --only=model=tiny",), runs=3,
        shrink=SYNTHETIC + ("--only=task=keywords", "--only=aggregator.name=focal")),
    "pow3r_paper_sweep": Run("configs/paper/pow3r.py", (
        "python -m experiments.sweep --config=configs/paper/pow3r.py --workdir=runs/pow3r_paper",),
        shrink=SYNTHETIC + ("--only=aggregator.name=pow3r", "--only=seed=0")),
    "judge_demo": Run("configs/judge_demo.py", (
        "python -m focal.graders.rule_server --port 8765 &",
        "python -m experiments.demo_assets --config=configs/judge_demo.py",
        "python -m experiments.train --config=configs/judge_demo.py --workdir=runs/judge_demo"),
        swap=(("8765", "{rule_port}"),
              ("--config=configs/judge_demo.py", "--config=configs/judge_demo.py:smoke")),
        shrink=("--config.grader.judge.base_url=http://127.0.0.1:{rule_port}/v1",)),
    "pow3r_healthbench_train": Run("configs/paper/pow3r_healthbench.py", (HEALTHBENCH_TRAIN,),
                                   devices=8, shrink=JUDGED, judge=True, checkpoint=True,
                                   data="healthbench_tiny.jsonl"),
    "pow3r_healthbench_lora_train": Run(
        "configs/paper/pow3r_healthbench.py", (HEALTHBENCH_LORA_TRAIN,), devices=8, judge=True,
        checkpoint=True, data="healthbench_tiny.jsonl",
        shrink=JUDGED + ("--config.grpo.micro_batch_size=0",
                         "--config.grpo.rollout_micro_batch_size=0")),
    "pow3r_healthbench_sweep": Run("configs/paper/pow3r_healthbench.py", (
        "python -m experiments.sweep --config=configs/paper/pow3r_healthbench.py",),
        same_flags_as=HEALTHBENCH_TRAIN, devices=8, judge=True, checkpoint=True,
        data="healthbench_tiny.jsonl",
        shrink=JUDGED + ("--only=aggregator.name=pow3r", "--only=seed=0")),
    "focal_rar_sweep": Run("configs/paper/focal_rar.py", (
        "python -m experiments.sweep --config=configs/paper/focal_rar.py "
        "--config.model.checkpoint=/ckpts/Qwen2.5-7B-Instruct "
        "--config.data.path=/data/rar/RaR-Medicine-20k.jsonl "
        "--config.grader.judge.base_url=http://judge-host:8000/v1 "
        "--config.grader.judge.model=Qwen/Qwen3-32B --config.mesh.shape=(1,8,1) "
        "--workdir=runs/focal_rar",), devices=8, judge=True, checkpoint=True,
        data="rar_tiny.jsonl", shrink=JUDGED + ("--only=aggregator.name=focal", "--only=seed=0")),
}
PLAN_NOT_RUN = ("compiles Qwen3-4B/8B programs for TPU (tens of minutes and ~10 GB each on this "
                "machine); tests/test_plan.py runs every documented experiments.plan command "
                "on a tiny Qwen3 shape")
NOT_RUN = {
    (SCALING, "pip install -e .[tpu]"):
        "installs the tpu extra (libtpu), which a CPU machine cannot load; installing from a "
        "checkout in a fresh environment is tests/test_notebook.py's slow test",
    (SCALING, "python -m experiments.plan --config=configs/paper/pow3r_healthbench.py "
              "--topology=v5p-8 --config.model.checkpoint=configs/checkpoints/qwen3-4b "
              "--config.mesh.shape=(1,4,1)"): PLAN_NOT_RUN,
    (SCALING, "python -m experiments.plan --config=configs/paper/pow3r_healthbench.py "
              "--topology=v5p-16 --config.model.checkpoint=configs/checkpoints/qwen3-8b "
              "--config.mesh.shape=(1,8,1) --json=plan.json"): PLAN_NOT_RUN,
    (SCALING, "python -m benchmarks.lora_rollout --scales small base --ranks 8 32 --length 64 "
              "--batch 16"):
        "a timing benchmark (minutes, figures only); tests/test_lora.py checks the merge it times",
    ("configs/paper/pow3r_healthbench.py",
     "python -m experiments.plan --config=configs/paper/pow3r_healthbench.py:lora "
     "--topology=v5e-8 --config.model.checkpoint=configs/checkpoints/qwen3-4b "
     "--config.mesh.shape=(1,8,1)"): PLAN_NOT_RUN,
}


def documented() -> dict[str, dict[str, list[str]]]:
  """{doc: {key: words}} for every document that exists in this checkout."""
  return {doc: document_commands(os.path.join(REPO, doc)) for doc in DOCS
          if os.path.exists(os.path.join(REPO, doc))}


def test_every_documented_command_is_covered():
  docs = documented()
  assert SCALING in docs and "configs/paper/focal.py" in docs
  covered = {(run.doc, c) for run in RUNS.values() for c in run.commands} | set(NOT_RUN)
  missing = [(doc, c) for doc, commands in docs.items() for c in commands
             if (doc, c) not in covered]
  assert not missing, ("documented commands with no RUNS entry in "
                       f"tests/test_scaling_commands.py: {missing}")
  # An entry whose document exists must still be documented there, word for word.
  stale = [(run.doc, c) for run in RUNS.values() if run.doc in docs
           for c in run.commands + ((run.same_flags_as,) if run.same_flags_as else ())
           if c not in docs[run.doc]]
  stale += [key for key in NOT_RUN if key[0] in docs and key[1] not in docs[key[0]]]
  assert not stale, f"RUNS entries no longer documented: {stale}"


def prompts_per_step(argv: list[str]) -> int:
  """The prompts per step a documented entry-point command trains: its flag, or its config's."""
  given = flag(argv, "config.data.prompts_per_step")
  if given is not None:
    return int(given)
  path, _, arg = flag(argv, "config", "configs/base.py").partition(":")
  spec = importlib.util.spec_from_file_location("documented_config", os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None).data.prompts_per_step


def test_documented_meshes_divide_the_prompts_per_step():
  """Every documented mesh's data x fsdp divides the batch its command trains."""
  checked = 0
  for doc, commands in documented().items():
    for command_words in commands.values():
      mesh = flag(command_words, "config.mesh.shape")
      if mesh is None:
        continue
      data, fsdp, _ = (int(v) for v in mesh.strip("()").split(","))
      assert prompts_per_step(command_words) % (data * fsdp) == 0, (doc, command_words)
      checked += 1
  assert checked >= 3


# -- running --------------------------------------------------------------------------------


def free_port(low: int = 0) -> int:
  """A free TCP port on 127.0.0.1 (>= low when given, for SLURM's port range)."""
  for port in ([0] if not low else range(low + os.getpid() % 1000, 65536)):
    with socket.socket() as s:
      try:
        s.bind(("127.0.0.1", port))
      except OSError:
        continue
      return s.getsockname()[1]
  raise RuntimeError(f"no free port >= {low}")


def runnable(command_words: list[str]) -> tuple[dict, list[str]]:
  """(environment assignments, argv) of a documented command; a launcher (gcloud's
  --command, srun) gives way to the python command it starts."""
  if command_words[0] == "gcloud":
    inner = next(w for w in command_words if w.startswith("--command="))
    command_words = words(inner[len("--command="):].split("&&")[-1])
  env = {}
  while "=" in command_words[0] and not command_words[0].startswith("-"):
    name, value = command_words[0].split("=", 1)
    env[name], command_words = value, command_words[1:]
  if command_words[0] != "python":
    command_words = command_words[command_words.index("python"):]  # srun's options
  return env, [w for w in command_words if w != "&"]


STAND_INS = {"--config.model.checkpoint=": "checkpoint", "--config.data.path=": "data",
             "--config.grader.judge.base_url=": "judge", "--config.eval.judge.base_url=": "judge"}


def rewrite(argv: list[str], run: Run, values: dict) -> list[str]:
  """Documented words as they run here: the run's swaps, stand-ins, relative workdirs."""
  swaps = dict(run.swap)
  out = []
  for word in argv:
    word = swaps.get(word, word).format(**values)
    prefix = next((p for p in STAND_INS if word.startswith(p)), None)
    if prefix:
      word = prefix + values[STAND_INS[prefix]]
    if word.startswith("--workdir=/"):
      word = "--workdir=" + word[len("--workdir=/"):]
    out.append(word)
  return out


def localize(argv: list[str], run: Run, values: dict) -> list[str]:
  """rewrite(), then a training entry point's borrowed flags and shrinking flags."""
  out = rewrite(argv, run, values)
  if out[1:3] in (["-m", "experiments.train"], ["-m", "experiments.sweep"]):
    if run.same_flags_as:  # its words after `python -m experiments.X --config=FILE`
      out += rewrite(runnable(words(run.same_flags_as))[1][4:], run, values)
    out += [flag.format(**values) for flag in run.shrink]
  return out


def process_env(run: Run, documented_env: dict, rank: int, values: dict, home) -> dict:
  # No shared compilation cache (tests/conftest.py): a documented command runs as a user's
  # would. (With the session's cache the 2-process sweep + eval once hung at JAX's shutdown
  # barrier, process 1 never arriving; it hung once without it too, beside another test
  # session, and passed alone, under load and in sequence: the cause is not pinned down.)
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("FOCAL_", "SLURM_", "XLA_FLAGS", "PYTHONPATH", "JAX_COMPILATION",
                              "JAX_PERSISTENT_CACHE"))}
  env.update(PYTHONPATH=REPO, HOME=str(home), PYTHONUSERBASE=site.getuserbase(),
             JAX_PLATFORMS="cpu", OPENAI_API_KEY="local-judge",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={run.devices}")
  env.update(documented_env)
  if "FOCAL_COORDINATOR" in env:
    env["FOCAL_COORDINATOR"] = f"127.0.0.1:{values['port']}"
    env["FOCAL_PROCESS_ID"] = str(rank)
  if run.slurm:  # what srun gives each task; JAX derives the coordinator's port from the job id
    env.update(SLURM_JOB_ID=str(values["slurm_port"] - 61440), SLURM_STEP_NODELIST="127.0.0.1",
               SLURM_NTASKS=str(run.processes), SLURM_PROCID=str(rank), SLURM_LOCALID="0",
               SLURM_STEP_NUM_NODES=str(run.processes))
  return env


def scratch(tmp_path):
  """(cwd, home): a folder whose configs/ and benchmarks/ are the checkout's, holding the
  docs' Python block as train.py, and an empty home."""
  cwd, home = tmp_path / "cwd", tmp_path / "home"
  cwd.mkdir()
  home.mkdir()
  for name in ("configs", "benchmarks"):
    os.symlink(os.path.join(REPO, name), cwd / name)
  with open(os.path.join(REPO, SCALING)) as f:
    (cwd / "train.py").write_text(markdown_block(f.read(), "python", "maybe_initialize"))
  return cwd, home


def start(argv: list[str], env: dict, cwd):
  return subprocess.Popen([sys.executable, *argv[1:]], env=env, cwd=cwd, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(procs, timeout: int = 1800) -> list[str]:
  """Every process's output once all have ended; a failure shows each one's tail (in a
  multi-process run the failing process is often not the one that reports the error)."""
  outs = []
  for proc in procs:
    try:
      outs.append(proc.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
      proc.kill()
      outs.append(proc.communicate()[0] + "\n[killed after the timeout]")
  codes = [proc.returncode for proc in procs]
  assert codes == [0] * len(procs), "\n".join(
      f"--- process {rank} (exit {code}) ---\n{out[-3000:]}"
      for rank, (code, out) in enumerate(zip(codes, outs)))
  return outs


def wait_for_port(port: int, proc, timeout: float = 120) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    with socket.socket() as s:
      if s.connect_ex(("127.0.0.1", port)) == 0:
        return
    time.sleep(0.3)
  raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def execute(run: Run, tmp_path, values: dict):
  """Runs `run`'s commands in order: (cwd, [(argv, output of process 0)] of each program)."""
  cwd, home = scratch(tmp_path)
  docs = document_commands(os.path.join(REPO, run.doc))
  lines = [runnable(docs[c]) for c in run.commands]
  background = []
  results, seen = [], set()
  try:
    for env, argv in [line for c, line in zip(run.commands, lines) if c.endswith("&")]:
      argv = localize(argv, run, values)
      background.append(start(argv, process_env(run, env, 0, values, home), cwd))
      wait_for_port(int(argv[argv.index("--port") + 1]), background[-1])
    foreground = [line for c, line in zip(run.commands, lines) if not c.endswith("&")]
    groups = [foreground] if run.rank_lines else [[line] * run.processes for line in foreground]
    for group in groups:
      argvs = [localize(argv, run, values) for _, argv in group]
      envs = [process_env(run, env, rank, values, home) for rank, (env, _) in enumerate(group)]
      key = json.dumps([argvs, envs], sort_keys=True)
      if key in seen:  # one program documented twice (two launchers, or with and without
        continue       # the environment it already gets)
      seen.add(key)
      procs = [start(argv, env, cwd) for argv, env in zip(argvs, envs)]
      outs = finish(procs)
      results.append((argvs[0], outs[0]))
  finally:
    for proc in background:
      proc.terminate()
      proc.wait(timeout=30)
  return cwd, results


def flag(argv: list[str], name: str, default=None):
  values = [w.split("=", 1)[1] for w in argv if w.startswith(f"--{name}=")]
  return values[-1] if values else default


def check_run_dir(run: Run, path, argv: list[str]) -> list[str]:
  """A finished run on the devices, processes and mesh the command asked for; returns the
  problems found in its log (a step logged more than once)."""
  run_dir = RunDir(str(path))
  total = run_dir.read_config().total_steps  # STEPS, or a smoke variant's own
  assert total <= 4 and run_dir.is_finished(total), (path, run_dir.rows()[-1:])
  made = run_dir.provenance()
  assert (made["device_count"], made["process_count"]) == (run.devices * run.processes,
                                                           run.processes), made
  mesh = flag(argv, "config.mesh.shape")
  if mesh is not None:
    assert made["mesh_shape"] == [int(v) for v in mesh.strip("()").split(",")], made
  steps = [r["step"] for r in run_dir.rows()]
  return [f"{path}: steps logged {steps}"] if len(steps) != len(set(steps)) else []


def check_output(run: Run, argv: list[str], out: str, cwd) -> list[str]:
  """What each kind of documented program must leave behind; returns log problems."""
  program = argv[2] if argv[1] == "-m" else argv[1]
  workdir = cwd / flag(argv, "workdir", "runs/default")
  if program == "-c":
    assert f"id={run.devices - 1}" in out, out[-2000:]  # jax.devices() lists every device
  elif program == "train.py":
    assert "{'data_position': 2}" in out, out[-2000:]   # trained, saved, restored on a new mesh
  elif program == "benchmarks/memory.py":
    assert "| base | 9.90 | (1,8,1) |" in out, out[-2000:]
  elif program == "experiments.train":
    return check_run_dir(run, workdir, argv)
  elif program == "experiments.sweep":
    assert (workdir / "summary.md").exists()
    dirs = sorted(os.path.dirname(p) for p in glob.glob(str(workdir / "*" / "config.json")))
    assert len(dirs) == run.runs, dirs
    return [problem for d in dirs for problem in check_run_dir(run, d, argv)]
  elif program == "experiments.eval":
    assert "mean rubric reward" in out, out[-2000:]
  elif program == "experiments.demo_assets":
    # The checkpoint and RaR files the demo's training command then reads, built under HOME.
    paths = dict(line.strip().split(": ", 1) for line in out.splitlines() if ": /" in line)
    assert set(paths) == {"checkpoint", "train", "eval"}, out[-2000:]
    assert all(os.path.exists(p) for p in paths.values()), paths
  else:
    raise AssertionError(f"no check for {program}")
  return []


def stand_in_values(run: Run, tmp_path) -> dict:
  values = {"port": free_port(), "rule_port": free_port(),
            "slurm_port": free_port(61440) if run.slurm else 0}
  if run.checkpoint:
    from chat_checkpoint import make_chat_checkpoint
    values["checkpoint"] = make_chat_checkpoint(str(tmp_path / "qwen3-tiny"))
  if run.data:
    values["data"] = varied_copies(os.path.join(DATA, run.data), str(tmp_path / run.data))
  return values


def varied_copies(path: str, out: str, copies: int = 4) -> str:
  """`out`: every record of the fixture `path` `copies` times, each copy's prompt (and id)
  made distinct, so that half of them still fill a step of data.prompts_per_step=8 distinct
  prompts (a run refuses a batch larger than its training set)."""
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  with open(out, "w") as f:
    for i in range(copies):
      for r in map(copy.deepcopy, records):
        if "question" in r:  # RaR
          r["question"] += f" (variant {i})"
        else:  # HealthBench
          r["prompt"][-1]["content"] += f" (variant {i})"
          r["prompt_id"] = f"{r['prompt_id']}-{i}"
        f.write(json.dumps(r) + "\n")
  return out


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if run.slow else [])
    for name, run in RUNS.items() if os.path.exists(os.path.join(REPO, run.doc))])
def test_documented_command_runs_shrunk(name, tmp_path):
  run = RUNS[name]
  values = stand_in_values(run, tmp_path)
  server = None
  if run.judge:
    from focal.graders.openai_server import ChatServer
    from test_real_data_loop import coin_judge
    server = ChatServer(coin_judge, models=()).start()  # any model name the command gives
    values["judge"] = server.url
  try:
    cwd, results = execute(run, tmp_path, values)
  finally:
    if server is not None:
      server.close()
  assert results
  problems = [p for argv, out in results for p in check_output(run, argv, out, cwd)]
  if run.known_issue:
    assert problems, f"fixed? {name} no longer shows its known issue: remove known_issue"
    pytest.xfail(f"{run.known_issue}: {problems[0]}")
  assert not problems
