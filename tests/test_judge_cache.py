"""The SQLite verdict cache: validation on read, threads, two processes, crash safety."""
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import threading

import pytest

from focal.graders.judge import JudgeClient, JudgeConfig, VerdictCache
from focal.graders.judge.cache import digest, verdict_key
from judge_servers import FaultServer


def key(i: int) -> bytes:
  return verdict_key("m", "t", digest(["conv", i]), digest("resp"), digest("crit"), False)


def test_round_trip_and_memory_mode(tmp_path):
  for path in ("", str(tmp_path / "sub" / "dir" / "v.sqlite")):
    cache = VerdictCache(path)
    cache.put(key(1), True, "because")
    cache.put_many([(key(2), False, ""), (key(3), True, "x")])
    cache.put(key(2), True, "asked again")  # a newer verdict replaces the old one
    got = cache.get_many([key(i) for i in range(5)])
    assert got == {key(1): (True, "because"), key(2): (True, "asked again"), key(3): (True, "x")}
    assert len(cache) == 3
    cache.close()


def test_keys_separate_every_component():
  base = ("m", "t", digest("c"), digest("r"), digest("k"), False)
  keys = {verdict_key(*base)}
  for i, other in enumerate(["m2", "t2", digest("c2"), digest("r2"), digest("k2"), True]):
    keys.add(verdict_key(*base[:i], other, *base[i + 1:]))
  assert len(keys) == 7 and verdict_key(*base) == verdict_key(*base)
  # Strings with lone surrogates (bytes that are not UTF-8, from decode_response) hash too.
  assert digest("\udcff") != digest("\udcfe")


@pytest.mark.parametrize("stored", ['{"criteria_met": "no"}', '{"criteria_met": 1}',
                                    '{"explanation": "x"}', "not json", "[true]", "null"])
def test_entries_that_are_not_a_proper_verdict_are_ignored(tmp_path, stored):
  path = str(tmp_path / "v.sqlite")
  cache = VerdictCache(path)
  cache.put(key(1), True, "")
  with sqlite3.connect(path) as db:
    db.execute("UPDATE verdicts SET verdict = ?", (stored,))
  assert cache.get_many([key(1)]) == {} and cache.ignored_entries == 1
  cache.close()


def test_a_corrupt_entry_is_asked_again_and_replaced(tmp_path):
  # issue 26: a cache entry with criteria_met "no" used to be read as a pass.
  server = FaultServer().start()
  path = str(tmp_path / "v.sqlite")
  config = JudgeConfig(base_url=server.url, model="judge-1", cache_path=path, timeout_s=2.0)
  criterion = {"text": "MODE=false c", "weight": 1.0}
  try:
    with JudgeClient(config) as client:
      assert client.judge_one("q", "r", criterion).score == 0.0
    with sqlite3.connect(path) as db:
      db.execute("""UPDATE verdicts SET verdict = '{"criteria_met": "no"}'""")
    with JudgeClient(config) as client:
      v = client.judge_one("q", "r", criterion)
      assert v.valid and not v.cached and v.score == 0.0
      assert client.cache.ignored_entries == 1
    with sqlite3.connect(path) as db:
      [(text,)] = db.execute("SELECT verdict FROM verdicts").fetchall()
    assert json.loads(text)["criteria_met"] is False
  finally:
    server.close()
  assert server.counts["false"] == 2


def test_threads_share_one_cache(tmp_path):
  cache = VerdictCache(str(tmp_path / "v.sqlite"))
  errors = []

  def work(t):
    try:
      for i in range(100):
        cache.put(key(1000 * t + i), bool(i % 2), f"t{t}")
        assert cache.get_many([key(1000 * t + i)])[key(1000 * t + i)][0] is bool(i % 2)
    except Exception as e:
      errors.append(e)

  threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors and len(cache) == 800
  cache.close()


def _writer(path, worker, n, barrier):
  cache = VerdictCache(path)
  barrier.wait()
  rng = random.Random(worker)
  for i in range(n):
    cache.put(key(i), i % 3 == 0, f"w{worker}")  # both processes write every key
    if rng.random() < 0.3:
      cache.get_many([key(rng.randrange(n))])
  cache.close()


def test_two_processes_write_one_file(tmp_path):
  path = str(tmp_path / "shared.sqlite")
  ctx = multiprocessing.get_context("spawn")
  barrier = ctx.Barrier(2)
  procs = [ctx.Process(target=_writer, args=(path, w, 300, barrier)) for w in range(2)]
  for p in procs:
    p.start()
  for p in procs:
    p.join(120)
  assert [p.exitcode for p in procs] == [0, 0]
  cache = VerdictCache(path)
  got = cache.get_many([key(i) for i in range(300)])
  assert len(got) == 300 and all(got[key(i)][0] == (i % 3 == 0) for i in range(300))
  assert cache.ignored_entries == 0


def _write_then_die(path, n):
  cache = VerdictCache(path)
  for i in range(n):
    cache.put(key(i), True, "")
  os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: a crash


def test_verdicts_survive_a_killed_process(tmp_path):
  path = str(tmp_path / "v.sqlite")
  proc = multiprocessing.get_context("spawn").Process(target=_write_then_die, args=(path, 200))
  proc.start()
  proc.join(120)
  assert proc.exitcode == -signal.SIGKILL
  assert len(VerdictCache(path).get_many([key(i) for i in range(200)])) == 200
