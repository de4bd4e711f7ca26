"""Focal against TRL and Tunix: GRPO iterations/s on the same shapes and settings, in one run.

  python -m benchmarks.vs_peers                          # 3 shapes x 3 peers, 5 interleaved rounds
  python -m benchmarks.vs_peers --shapes 0.11M --rounds 3 --peers focal tunix
  python -m benchmarks.vs_peers --json results.json      # also keep every iteration time
  python -m benchmarks.vs_peers --baseline /path/to/other/checkout   # before/after, same run

Each peer runs in its own process and virtual environment (benchmarks/peers/*_worker.py; the
environments are made by the commands in docs/PERFORMANCE.md; peers are never dependencies of
Focal). For each shape the three workers start together, build their model and trainer
offline and run `--warmup` untimed iterations (compilation included); then, round after round,
each worker in turn (the order rotates every round) runs `--iters` timed iterations while the
others wait idle. Other jobs on a shared machine therefore load every peer alike within a
round, and the ratios are taken within rounds. Reported: the median over rounds of
iterations/s with the spread (min-max) over rounds, the median of the per-round ratios with
their spread, the load average during each shape, versions and machine facts, and the targets.
Settings: benchmarks/peers/shapes.py. With --baseline DIR, another checkout of Focal (e.g. the
commit before a change) runs as one more worker, "baseline" (its own focal_worker.py and code),
interleaved with the others, and the table gains focal / baseline: a before/after comparison
taken under the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "peers"))

import shapes  # noqa: E402

PYTHONS = {"focal": sys.executable, "trl": "/work/venvs/trl/bin/python",
           "tunix": "/work/venvs/tunix/bin/python"}
ITERS = {"0.11M": 8, "3.0M": 3, "23.7M": 1}   # timed iterations per worker per round
TARGETS = {"0.11M": {"trl": 5.0, "tunix": 3.0}, "3.0M": {"trl": 2.0, "tunix": 1.7},
           "23.7M": {"trl": 1.3, "tunix": 1.25}}


class Worker:
  """One peer on one shape in a subprocess, driven by 'run K' lines (see shapes.commands)."""

  def __init__(self, peer: str, shape: str, python: str, warmup: int, log_dir: str,
               root: str = ROOT):
    worker = "focal" if peer == "baseline" else peer  # the baseline is Focal from `root`
    script = os.path.join(root, "benchmarks", "peers", f"{worker}_worker.py")
    self.peer, self.shape = peer, shape
    self.log = open(os.path.join(log_dir, f"{peer}_{shape}.log"), "w")
    # Passive OpenMP threads: torch's default spin-waiting collapses when other jobs share the
    # cores (TRL at 0.11M: 2.5 s per iteration spinning, 0.32 s passive, at load 10).
    env = dict(os.environ, PYTHONPATH=root, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_WAIT_POLICY="PASSIVE")
    self.proc = subprocess.Popen([python, script, "--shape", shape, "--warmup", str(warmup)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                 text=True, env=env, cwd=ROOT)

  def read(self) -> dict:
    """The next protocol line ('@@ {json}'); other output goes to the log."""
    for line in self.proc.stdout:
      if line.startswith("@@ "):
        return json.loads(line[3:])
      self.log.write(line)
    raise RuntimeError(f"{self.peer} worker on {self.shape} exited with {self.proc.wait()}; "
                       f"see {self.log.name}")

  def run(self, iters: int) -> list[float]:
    self.proc.stdin.write(f"run {iters}\n")
    self.proc.stdin.flush()
    return self.read()["seconds"]

  def close(self):
    try:
      self.proc.stdin.write("quit\n")
      self.proc.stdin.close()
      self.proc.wait(timeout=120)
    except (BrokenPipeError, subprocess.TimeoutExpired):
      self.proc.kill()
    self.log.close()


def machine_facts() -> dict:
  model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
  mem = next((int(line.split()[1]) // 2 ** 20 for line in open("/proc/meminfo")
              if line.startswith("MemTotal")), 0)
  return {"cpu": model, "cores": os.cpu_count(), "memory_gib": mem,
          "python": platform.python_version(), "platform": platform.platform()}


def bench_shape(shape: str, peers, args) -> dict:
  """Interleaved rounds on one shape: {peer: [it/s per round]}, meta, loads."""
  workers = [Worker(p, shape, PYTHONS.get(p, sys.executable), args.warmup, args.log_dir,
                    args.baseline if p == "baseline" else ROOT) for p in peers]
  try:
    meta = {w.peer: w.read() for w in workers}
    iters = args.iters or ITERS[shape]
    rates = {p: [] for p in peers}
    loads = []
    for r in range(args.rounds):
      order = workers[r % len(workers):] + workers[:r % len(workers)]
      for w in order:
        seconds = w.run(iters)
        rates[w.peer].append(len(seconds) / sum(seconds))
      loads.append(os.getloadavg()[0])
      print(f"  {shape} round {r + 1}/{args.rounds}: "
            + "  ".join(f"{p} {rates[p][-1]:.3f} it/s" for p in peers)
            + f"  (load {loads[-1]:.1f})", flush=True)
  finally:
    for w in workers:
      w.close()
  return {"rates": rates, "meta": meta, "loads": loads, "iters": iters}


def spread(values) -> str:
  return f"{statistics.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def report(results: dict, peers) -> list[str]:
  """The table (medians [min-max] over rounds) and the target verdicts."""
  others = [p for p in peers if p != "focal"]
  lines = ["| shape | params | " + " | ".join(f"{p} it/s" for p in peers) + " | "
           + " | ".join(f"focal / {p}" for p in others) + " |",
           "|---" * (2 + len(peers) + len(others)) + "|"]
  verdicts = []
  for shape, res in results.items():
    rates = res["rates"]
    cells = [spread(rates[p]) for p in peers]
    ratios = {}
    if "focal" in peers:
      for p in others:
        ratios[p] = [f / o for f, o in zip(rates["focal"], rates[p])]
        got = statistics.median(ratios[p])
        if p not in TARGETS[shape]:  # the baseline: before/after, no target
          verdicts.append(f"{shape}: focal / {p} = {got:.2f}x")
          continue
        target = TARGETS[shape][p]
        verdicts.append(f"{shape}: focal / {p} = {got:.2f}x (target {target}x) -> "
                        f"{'MEETS' if got >= target else 'MISSES'}")
    lines.append(f"| {shape} | {shapes.param_count(shapes.SHAPES[shape]) / 1e6:.2f}M | "
                 + " | ".join(cells) + " | "
                 + " | ".join(spread(ratios[p]) + "x" for p in others if p in ratios) + " |")
  return lines + [""] + verdicts


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--shapes", nargs="+", default=list(shapes.SHAPES),
                      choices=list(shapes.SHAPES))
  parser.add_argument("--peers", nargs="+", default=["focal", "trl", "tunix"],
                      choices=list(PYTHONS))
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--iters", type=int, default=0,
                      help="timed iterations per worker per round (default: per shape)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--log-dir", default="/tmp/focal_vs_peers", help="worker stderr logs")
  parser.add_argument("--json", default="", help="write every figure to this file")
  parser.add_argument("--baseline", default="",
                      help="another Focal checkout to run as the peer 'baseline' (before/after)")
  args = parser.parse_args(argv)
  if args.baseline:
    if not os.path.exists(os.path.join(args.baseline, "benchmarks", "peers", "focal_worker.py")):
      parser.error(f"--baseline {args.baseline}: no benchmarks/peers/focal_worker.py there")
    args.peers = [p for p in args.peers if p != "baseline"] + ["baseline"]
  for peer in args.peers:
    if peer in PYTHONS and not os.path.exists(PYTHONS[peer]):
      parser.error(f"no environment for {peer} at {PYTHONS[peer]}; make it with the command in "
                   "docs/PERFORMANCE.md")
  os.makedirs(args.log_dir, exist_ok=True)

  start = time.perf_counter()
  facts = machine_facts()
  print(f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, "
        f"Python {facts['python']}; load at start {os.getloadavg()}")
  print(f"settings: {shapes.NUM_PROMPTS} prompts x G={shapes.GROUP_SIZE}, prompt "
        f"{shapes.PROMPT_LEN} + completion {shapes.COMPLETION_LEN} tokens (full length), float32, "
        f"beta=0, one update per batch, {args.rounds} rounds, peer order rotating")
  results = {}
  for shape in args.shapes:
    results[shape] = bench_shape(shape, args.peers, args)
  print("\nversions: " + "; ".join(
      f"{p}: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
      for p, m in results[args.shapes[0]]["meta"].items()))
  for shape, res in results.items():
    print(f"{shape}: {res['iters']} iterations per worker per round; load "
          f"{min(res['loads']):.1f}-{max(res['loads']):.1f}; params "
          + ", ".join(f"{p} {m['params']:,}" for p, m in res["meta"].items()))
  print("\niterations/s: median [min-max] over rounds; ratios taken within each round\n")
  print("\n".join(report(results, args.peers)))
  print(f"\ntotal {time.perf_counter() - start:.0f} s; load at end {os.getloadavg()}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"machine": facts, "args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
