"""Judge throughput against a local fixed-latency server (figures only, no assertions).

Usage (from the repository root):
    python benchmarks/judge_loop.py                          # 50 ms, concurrency 1 16 64
    python benchmarks/judge_loop.py --latency-ms 20 --concurrency 8 64 --seconds 3

A server process answers every chat completion after --latency-ms (asyncio: waiting costs it
no CPU). Its capacity at concurrency c is what a lean raw-socket load generator gets from it
with c connections (ideal: c / latency); it is measured at each c and at 4 x max(c), to show
the server is not the bottleneck. Then `JudgeClient.grade` asks distinct (prompt, rollout,
criterion) requests at max_concurrency=c, with its SQLite verdict cache on (every verdict
committed as it arrives), and the script prints verdicts/s against the server's capacity at c.
Target (issue 24): at c = 64, at least 90% of the server's capacity.

Then (`--loop`, `measure_loop`) the judged training loop itself on the synthetic suite's default
shape (configs/base.py: 12 prompts x G=8, every criterion judged by this server): seconds per
iteration with `grader.overlap` off and on, against rollout + learn alone (the same run graded
in-jit) and the judge's own time per step. Target (issue 24): with overlap on, an iteration
takes at most 1.1 x max(device time, judge time).

Each measurement is one function (`measure_capacity`, `measure_client`, `measure_loop`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focal.graders.judge import JudgeClient, JudgeConfig  # noqa: E402

MODEL = "bench-judge"
_ANSWER = json.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {
    "role": "assistant",
    "content": json.dumps({"explanation": "It does.", "criteria_met": True})}}]}).encode()
_REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(_ANSWER)).encode() + b"\r\n\r\n" + _ANSWER)


# -- the fixed-latency server (its own process) ---------------------------------------------------

async def _serve_connection(reader, writer, latency: float) -> None:
  try:
    while True:
      head = await reader.readuntil(b"\r\n\r\n")
      length = 0
      for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
          length = int(line.split(b":")[1])
      await reader.readexactly(length)
      await asyncio.sleep(latency)
      writer.write(_REPLY)
      await writer.drain()
  except (asyncio.IncompleteReadError, ConnectionError):
    pass
  finally:
    writer.close()


def _server_main(latency: float, ports) -> None:
  async def run():
    server = await asyncio.start_server(
        lambda r, w: _serve_connection(r, w, latency), "127.0.0.1", 0, backlog=1024)
    ports.put(server.sockets[0].getsockname()[1])
    await server.serve_forever()
  asyncio.run(run())


def start_latency_server(latency_s: float):
  """(base_url, process) of a server answering every request after latency_s."""
  ctx = multiprocessing.get_context("spawn")
  ports = ctx.Queue()
  proc = ctx.Process(target=_server_main, args=(latency_s, ports), daemon=True)
  proc.start()
  return f"http://127.0.0.1:{ports.get(timeout=60)}/v1", proc


# -- measurements --------------------------------------------------------------------------------

def measure_capacity(url: str, concurrency: int, seconds: float) -> float:
  """Requests/s a minimal raw-socket client gets with `concurrency` keep-alive connections."""
  port = int(url.rsplit(":", 1)[1].split("/")[0])
  body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 2000}]})
  request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
             f"application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()

  async def worker(stop_at: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    while time.perf_counter() < stop_at:
      writer.write(request)
      head = await reader.readuntil(b"\r\n\r\n")
      length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
      await reader.readexactly(length)
      done += 1
    writer.close()
    return done

  async def run() -> float:
    start = time.perf_counter()
    counts = await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
    return sum(counts) / (time.perf_counter() - start)

  return asyncio.run(run())


def judge_inputs(n: int, criteria_per_prompt: int = 8, group: int = 8, tag: str = "step"):
  """Distinct requests: B prompts x G rollouts x K criteria with B*G*K >= n (HealthBench-sized
  texts: a ~600-character conversation, ~800-character responses)."""
  b = max(1, -(-n // (criteria_per_prompt * group)))
  conversations = [f"user: {tag} question {i} " + "about a symptom and its treatment " * 18
                   for i in range(b)]
  responses = [[f"response {i}.{g} " + "with advice, dosage and when to see a doctor. " * 17
                for g in range(group)] for i in range(b)]
  criteria = [[{"text": f"States criterion {k} of the rubric clearly.", "weight": 5 - k,
                "category": "accuracy"} for k in range(criteria_per_prompt)] for _ in range(b)]
  mask = [[True] * criteria_per_prompt for _ in range(b)]
  return conversations, responses, criteria, mask


def measure_client(url: str, concurrency: int, latency_s: float, seconds: float,
                   cache_dir: str) -> dict:
  """JudgeClient.grade over ~seconds of distinct requests at max_concurrency=concurrency."""
  n = max(64, int(seconds * concurrency / latency_s))
  config = JudgeConfig(base_url=url, model=MODEL, max_concurrency=concurrency, timeout_s=30.0,
                       max_retries=0, cache_path=os.path.join(cache_dir, f"c{concurrency}.sqlite"))
  with JudgeClient(config) as client:
    client.grade(*judge_inputs(concurrency, 1, 1, tag="warm-up"))  # open the connections
    conversations, responses, criteria, mask = judge_inputs(n)
    cpu = time.process_time()
    _, valid, stats = client.grade(conversations, responses, criteria, mask, "flip")
    cpu = time.process_time() - cpu
  assert valid.all() and stats.cache_hits == 0, stats.as_dict()
  return {"verdicts": stats.unique, "seconds": stats.seconds,
          "verdicts_per_s": stats.unique / stats.seconds, "cpu_s_per_verdict": cpu / stats.unique}


def measure_loop(url: str | None, steps: int, overlap: bool = False, concurrency: int = 64,
                 model: str = "tiny") -> dict:
  """Median seconds per iteration (and judge seconds per step) of `steps` GRPO iterations of the
  default config; `url` None grades in-jit (rollout + learn only)."""
  from configs import base
  from focal import loop
  from focal.rundir import RunDir
  c = base.get_config()
  c.model.scale = model
  # Metrics are fetched on log steps only; a fetch every step would stop the device work of
  # step t from overlapping the host's grading of step t + 1.
  span = max(2, (steps - 2) // 2)
  c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 2 + 2 * span, span, 10**6, 10**6
  c.eval.num_samples = 1
  if url is not None:
    c.grader.kind = "judge"
    c.grader.overlap = overlap
    j = c.grader.judge
    j.base_url, j.model, j.max_concurrency = url, MODEL, concurrency
    j.max_retries, j.cache_path = 0, ""
    j.max_invalid_frac = 1.0  # a constant judge: rewards are flat, the timing is what counts
  with tempfile.TemporaryDirectory() as workdir:
    loop.run(c, workdir, progress=False)
    rows = [r for r in RunDir(workdir).rows() if "train/seconds" in r]
  # Steps 2 + span .. 2 + 2 span: after compilation, before the final evaluation.
  first, second = rows[0], rows[1]
  iteration = (second["train/seconds"] - first["train/seconds"]) / span
  return {"iteration_s": iteration, "judge_s": float(second.get("train/judge_seconds", 0.0))}


def report_loop(url: str, steps: int) -> None:
  alone = measure_loop(None, steps)
  off = measure_loop(url, steps, overlap=False)
  on = measure_loop(url, steps, overlap=True)
  device, judge = alone["iteration_s"], off["judge_s"]
  print(f"loop (configs/base.py shape, seconds per iteration over {steps} steps): rollout + learn alone "
        f"{device:.3f} s | judge per step {judge:.3f} s | overlap off {off['iteration_s']:.3f} s "
        f"| overlap on {on['iteration_s']:.3f} s")
  bound = 1.1 * max(device, judge)
  print(f"target: overlap on <= 1.1 x max(device, judge) = {bound:.3f} s: "
        f"{'met' if on['iteration_s'] <= bound else 'NOT met'} "
        f"({on['iteration_s'] / max(device, judge):.2f}x)")


def print_facts() -> None:
  print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--latency-ms", type=float, default=50.0)
  parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
  parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
  parser.add_argument("--loop", action="store_true",
                      help="also time the judged training loop with overlap off and on")
  parser.add_argument("--loop-steps", type=int, default=12)
  args = parser.parse_args(argv)
  latency = args.latency_ms / 1000
  print_facts()
  url, server = start_latency_server(latency)
  try:
    headroom = 4 * max(args.concurrency)
    cap = measure_capacity(url, headroom, args.seconds)
    print(f"server: {args.latency_ms:g} ms per request; capacity at concurrency {headroom}: "
          f"{cap:,.0f} req/s (ideal {headroom / latency:,.0f})")
    ratios = {}
    with tempfile.TemporaryDirectory() as cache_dir:
      for c in args.concurrency:
        cap = measure_capacity(url, c, args.seconds)
        got = measure_client(url, c, latency, args.seconds, cache_dir)
        print(f"concurrency {c:3d}: client {got['verdicts_per_s']:8,.1f} verdicts/s "
              f"({got['verdicts']} in {got['seconds']:.1f} s, "
              f"{1000 * got['cpu_s_per_verdict']:.2f} ms CPU each) | server capacity "
              f"{cap:8,.1f} req/s (ideal {c / latency:,.0f}) | client/capacity "
              f"{got['verdicts_per_s'] / cap:.1%}")
        ratios[c] = got["verdicts_per_s"] / cap
    if 64 in ratios:
      print(f"target: client >= 90% of the server's capacity at concurrency 64: "
            f"{'met' if ratios[64] >= 0.9 else 'NOT met'} ({ratios[64]:.1%})")
    if args.loop:
      report_loop(url, args.loop_steps)
  finally:
    server.terminate()


if __name__ == "__main__":
  main()
