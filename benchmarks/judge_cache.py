"""Speed of the judge's SQLite verdict cache at a million rows (figures only, no assertions).

Usage (from the repository root):
    python benchmarks/judge_cache.py                    # 1e6 rows in a temporary directory
    python benchmarks/judge_cache.py --rows 200000 --dir /scratch

It fills a cache with --rows verdicts in transactions of --batch rows, then, at that size,
times what the judge client does per step:
  * single puts: one verdict, one committed transaction (how the client writes as verdicts
    arrive, so a crash loses at most the requests in flight);
  * batched lookups: `get_many` of --lookup keys per call, all present (a resumed step) and all
    absent (a fresh step);
  * single lookups: `get_many` of one key.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tqdm import tqdm  # noqa: E402

from focal.graders.judge import VerdictCache  # noqa: E402


def key(i: int) -> bytes:
  return hashlib.sha256(i.to_bytes(8, "little")).digest()


def fill(cache: VerdictCache, rows: int, batch: int) -> float:
  """Seconds to insert `rows` verdicts in transactions of `batch` (key generation excluded)."""
  seconds = 0.0
  for start in tqdm(range(0, rows, batch), desc="fill", unit_scale=batch):
    items = [(key(i), i % 2 == 0, "one sentence of explanation, as a judge writes it.")
             for i in range(start, min(rows, start + batch))]
    t = time.perf_counter()
    cache.put_many(items)
    seconds += time.perf_counter() - t
  return seconds


def time_single_puts(cache: VerdictCache, first: int, n: int) -> float:
  keys = [key(first + i) for i in range(n)]
  t = time.perf_counter()
  for i, k in enumerate(keys):
    cache.put(k, bool(i % 2), "explanation")
  return n / (time.perf_counter() - t)


def time_lookups(cache: VerdictCache, keys: list, per_call: int) -> tuple[float, int]:
  """(keys looked up per second, keys found), in calls of `per_call` keys."""
  t = time.perf_counter()
  found = 0
  for start in range(0, len(keys), per_call):
    found += len(cache.get_many(keys[start:start + per_call]))
  rate = len(keys) / (time.perf_counter() - t)
  return rate, found


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", type=int, default=1_000_000)
  parser.add_argument("--batch", type=int, default=10_000)
  parser.add_argument("--lookup", type=int, default=1_000, help="keys per batched lookup")
  parser.add_argument("--probes", type=int, default=20_000, help="keys timed per measurement")
  parser.add_argument("--dir", default=None, help="where the cache file goes (default: a tmp dir)")
  args = parser.parse_args(argv)
  print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or 'unknown processor'}")
  with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
    path = os.path.join(tmp, "verdicts.sqlite")
    cache = VerdictCache(path)
    seconds = fill(cache, args.rows, args.batch)
    print(f"fill: {args.rows} rows in {seconds:.1f} s = {args.rows / seconds:,.0f} rows/s "
          f"(transactions of {args.batch})")
    rng = random.Random(0)
    present = [key(i) for i in rng.sample(range(args.rows), args.probes)]
    absent = [key(args.rows + 10_000_000 + i) for i in range(args.probes)]
    rate, found = time_lookups(cache, present, args.lookup)
    print(f"lookup at {args.rows} rows, {args.lookup} keys per call, all present: "
          f"{rate:,.0f} keys/s ({found}/{len(present)} found)")
    rate, found = time_lookups(cache, absent, args.lookup)
    print(f"lookup at {args.rows} rows, {args.lookup} keys per call, all absent: "
          f"{rate:,.0f} keys/s ({found} found)")
    rate, _ = time_lookups(cache, present[:args.probes // 4], 1)
    print(f"lookup at {args.rows} rows, 1 key per call: {rate:,.0f} keys/s")
    n = max(1, args.probes // 4)
    rate = time_single_puts(cache, args.rows, n)
    print(f"insert at {args.rows} rows, one committed transaction per verdict: {rate:,.0f} "
          f"verdicts/s ({n} timed)")
    cache.close()
    size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    print(f"files: {size / 2**20:.0f} MiB for {args.rows + n} rows "
          f"({size / (args.rows + n):.0f} bytes/row, WAL included)")


if __name__ == "__main__":
  main()
