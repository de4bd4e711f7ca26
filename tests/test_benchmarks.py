"""Every benchmark in benchmarks/ runs once, on its smallest shapes, and prints the figures its
docstring promises: its header and a number in every row.

Each runs in this process through its `main(argv)` (the compiled programs land in the session's
XLA cache). Those that compile a whole GRPO step, train a run or start worker processes are
`slow`; the peers' own workers (TRL, Tunix) and libtpu are not needed: vs_peers runs Focal's
worker alone, tpu_attention is skipped without libtpu.
"""
from __future__ import annotations

import importlib
import re

import pytest

from focal import aggregators

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"


def run(module: str, argv, capsys) -> str:
  """The benchmark's stdout after `main(argv)`."""
  importlib.import_module(f"benchmarks.{module}").main(argv)
  return capsys.readouterr().out


def rows(out: str, pattern: str) -> list[re.Match]:
  return [m for m in map(re.compile(pattern).match, out.splitlines()) if m]


@pytest.fixture
def small_peak(monkeypatch):
  """benchmarks.step.Peak on 128 x 128 matmuls: the peak figure is printed, not checked."""
  import benchmarks.iteration
  import benchmarks.step

  class Small(benchmarks.step.Peak):
    def __init__(self, n: int = 128, calls: int = 1):
      super().__init__(n, calls)

  monkeypatch.setattr(benchmarks.step, "Peak", Small)
  monkeypatch.setattr(benchmarks.iteration, "Peak", Small)


def test_aggregators_prints_every_registered_aggregator(capsys):
  out = run("aggregators", ["--repeats", "1", "--sizes", "2,2,3"], capsys)
  assert re.search(r"aggregator\s+B2 G2 K3 ns/verdict", out), out
  found = {m[1] for m in rows(out, rf"(\S+)\s+({NUMBER}) ms\s+({NUMBER})$")}
  assert set(aggregators.registered()) <= found, out
  assert "focal[w_min=0.01,w_max=0.5,ema=0.9]" in found, out


def test_judge_cache_prints_each_operation(capsys, tmp_path):
  out = run("judge_cache", ["--rows", "2000", "--batch", "500", "--lookup", "10",
                            "--probes", "50", "--dir", str(tmp_path)], capsys)
  assert re.search(rf"fill: 2000 rows in {NUMBER} s = {NUMBER} rows/s", out), out
  assert len(rows(out, rf"lookup at 2000 rows, .*: {NUMBER} keys/s")) == 3, out
  assert re.search(rf"one committed transaction per verdict: {NUMBER} verdicts/s", out), out


def test_logprob_memory_prints_temporaries_per_chunk(capsys):
  out = run("logprob_memory", ["--vocab", "64", "--rows", "16", "--chunk", "8"], capsys)
  assert "vocabulary 64" in out, out
  found = rows(out, rf"rows\s+\d+ chunk\s+(\d+): XLA temporaries\s+{NUMBER} GiB")
  assert [m[1] for m in found] == ["8"], out


def test_memory_table_holds_every_scale_on_every_mesh(capsys):
  out = run("memory", ["--meshes", "1,1,1", "1,8,1"], capsys)
  assert out.startswith("| scale | params (M) | mesh (data,fsdp,tensor) |"), out
  table = rows(out, rf"\| (\w+) \| {NUMBER} \| \(([\d,]+)\) \| ({NUMBER}) \| ({NUMBER}) \| "
                    rf"({NUMBER}) \| {NUMBER} \| ")
  assert {(m[1], m[2]) for m in table} == {(s, mesh) for s in ("tiny", "small", "base")
                                          for mesh in ("1,1,1", "1,8,1")}, out
  # The run's optimizer (AdamW: two moments) and, with beta > 0, a reference copy.
  for m in table:
    params, adam, ref = (float(m[i]) for i in (3, 4, 5))
    assert adam == pytest.approx(2 * params, rel=1e-2) and ref == pytest.approx(params), m[0]


@pytest.mark.slow
def test_task_diagnostics_reports_every_task_and_the_suite(capsys):
  from focal import tasks
  out = run("task_diagnostics", ["--prompts", "2", "--group", "2"], capsys)
  for name in tasks.names():
    assert re.search(rf"=== {name}: saturated \d+%  dead \d+%  contrastive \d+%", out), out
  assert re.search(r"=== suite .*\n\s+saturated \d+%", out), out


def test_judge_loop_prints_client_against_capacity(capsys):
  out = run("judge_loop", ["--latency-ms", "1", "--concurrency", "2", "--seconds", "0.3"],
            capsys)
  assert re.search(rf"capacity at concurrency 8: {NUMBER} req/s", out), out
  assert re.search(rf"concurrency   2: client\s+{NUMBER} verdicts/s .* client/capacity "
                   rf"{NUMBER}%", out), out


@pytest.mark.slow
def test_judge_loop_times_the_judged_loop(capsys):
  out = run("judge_loop", ["--latency-ms", "1", "--concurrency", "2", "--seconds", "0.2",
                           "--loop", "--loop-steps", "2"], capsys)
  assert "overlap" in out, out


@pytest.mark.slow
def test_decode_prints_ms_per_token_per_length(capsys):
  out = run("decode", ["--scales", "tiny", "--lengths", "2", "4", "--batch", "2",
                       "--prompt-len", "4", "--repeats", "1"], capsys)
  assert len(rows(out, rf"\s+tiny\s+[\d,]+\s+[24]\s+{NUMBER}\s+{NUMBER}")) == 2, out
  assert re.search(rf"tiny decode ms/token max/min over L = {NUMBER}", out), out


@pytest.mark.slow
def test_lora_rollout_prints_adapted_merged_and_merge(capsys):
  out = run("lora_rollout", ["--scales", "tiny", "--ranks", "2", "--length", "2", "--batch", "2",
                             "--prompt-len", "4", "--repeats", "1"], capsys)
  assert re.search(r"scale\s+rank\s+adapted s\s+merged s\s+merge s", out), out
  assert rows(out, rf"\s+tiny\s+2\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"), out


@pytest.mark.slow
def test_sim_prints_a_row_per_method_and_seed_count(capsys):
  out = run("sim", ["--methods", "weighted_sum", "focal", "--seeds", "2", "--scaling", "2", "4",
                    "--steps", "2", "--prompts", "4", "--group", "2", "--criteria", "2",
                    "--types", "4"], capsys)
  assert "P=4 G=2 K=2 M=4, 2 steps" in out, out
  assert re.search(rf"wall s per seed: {NUMBER}, {NUMBER}", out), out


@pytest.mark.slow
def test_compile_time_prints_trace_and_compile_seconds(capsys):
  out = run("compile_time", ["--layers", "1", "--remat", "none", "--batch", "1", "--group", "1",
                             "--prompt", "8", "--new", "8"], capsys)
  assert re.search(rf"layers\s+1 remat none : trace\s+{NUMBER} s \+", out), out


@pytest.mark.slow
def test_step_prints_the_throughput_table_and_verdict(capsys, small_peak):
  out = run("step", ["--scales", "tiny", "--batch", "1", "--group", "2", "--prompt-len", "4",
                     "--new-tokens", "4", "--repeats", "1", "--decode-lengths", "2",
                     "--decode-batch", "2"], capsys)
  assert re.search(r"scale\s+params\s+peak \|\s+rollout s", out), out
  assert rows(out, rf"\s+tiny\s+[\d,]+\s+{NUMBER} \|\s+{NUMBER}"), out
  assert re.search(r"the update costs \d+\.\d forward passes", out), out
  assert re.search(rf"verdict: tiny learn step {NUMBER} GF/s", out), out


@pytest.mark.slow
def test_iteration_prints_every_section(capsys, small_peak):
  out = run("iteration", ["--shapes", "0.11M", "--repeats", "1", "--seeds", "2"], capsys)
  assert rows(out, rf"\s*0.11M\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\d+% \|"), out
  found = {m[1] for m in rows(out, rf"\s*(\S+)\s+{NUMBER}\s+{NUMBER}%$")}
  assert set(aggregators.registered()) <= found, out
  assert re.search(rf"N=2: sequential {NUMBER} s, vmapped {NUMBER} s", out), out
  assert re.search(rf"0.11M: float32 {NUMBER} s, bfloat16 {NUMBER} s", out), out


@pytest.mark.slow
def test_profile_step_prints_phases_and_slowest_ops(capsys, tmp_path):
  out = run("profile_step", ["--shape", "0.11M", "--steps", "1", "--top", "3",
                             "--trace-dir", str(tmp_path)], capsys)
  assert re.search(r"phase\s+ms/step\s+share\s+ops/step", out), out
  assert "slowest ops" in out, out


@pytest.mark.slow
def test_readiness_reports_one_program_on_one_device(capsys):
  out = run("readiness", ["--mesh", "1,1,1"], capsys)
  assert "XLA programs per train_step: 1" in out, out
  assert re.search(r"donation: (\d+) of \1 state leaves", out), out


@pytest.mark.slow
def test_seeds_prints_sequential_against_vmapped(capsys, tmp_path):
  out = run("seeds", ["--seeds", "2", "--steps", "2", "--cache-dir", str(tmp_path)], capsys)
  assert rows(out, rf"\s+2\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x"), out


@pytest.mark.slow
def test_vs_peers_runs_the_focal_worker(capsys, tmp_path):
  out = run("vs_peers", ["--shapes", "0.11M", "--peers", "focal", "--rounds", "1", "--iters",
                         "1", "--warmup", "1", "--log-dir", str(tmp_path)], capsys)
  assert "iterations/s" in out and "0.11M" in out, out


@pytest.mark.slow
def test_load_reports_peak_rss_against_disk(capsys, monkeypatch):
  from benchmarks import load
  monkeypatch.setattr(load, "SHAPE", dict(load.SHAPE, vocab_size=512, d_model=64, n_layers=2,
                                          n_heads=2, n_kv_heads=1, head_dim=32, d_ff=128))
  out = run("load", ["--shards", "2"], capsys)
  assert re.search(r"checkpoint: \d+M parameters, bfloat16, 2 files", out), out
  assert re.search(rf"peak RSS \(VmHWM\): {NUMBER} GiB = {NUMBER}x the size on disk", out), out


@pytest.mark.slow
def test_eval_memory_compares_the_two_builds(capsys, monkeypatch, tmp_path):
  from benchmarks import eval_memory
  monkeypatch.setattr(eval_memory, "SHAPE", dict(d_model=64, n_layers=2, n_heads=2, n_kv_heads=2,
                                                 head_dim=32, d_ff=128))
  out = run("eval_memory", ["--dir", str(tmp_path)], capsys)
  assert len(rows(out, rf"(eval_build|training build)\s+{NUMBER} MiB \(")) == 2, out


@pytest.mark.slow
def test_tpu_attention_compiles_for_a_tpu_topology(capsys):
  pytest.importorskip("libtpu")
  out = run("tpu_attention", ["--layers", "1", "--batch", "2", "--group", "2", "--prompt", "128",
                              "--new", "128"], capsys)
  assert rows(out, rf"learn\s+attention \w+\s*: temp\s+{NUMBER}"), out
