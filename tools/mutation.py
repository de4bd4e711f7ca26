"""Mutation testing of Focal's formula modules with cosmic-ray (docs/RELIABILITY.md, issue 38).

  python tools/mutation.py run --sample 100             # the seeded sample RELIABILITY.md reports
  python tools/mutation.py run --shard 0/16             # every mutant: one of 16 shards (16 workdirs)
  python tools/mutation.py run --resume                 # re-test the survivors after adding tests
  python tools/mutation.py report [--workdir DIR]       # score, survivors and their diffs

Not part of the default suite or CI. Needs `pip install -e ".[mutation]" -c constraints.txt`.

Why cosmic-ray and not mutmut 3: mutmut 3 never mutates a decorated function, and every
aggregator update, estimator `combine` and the sampler's jitted body sits inside one
(`@base.register`, `@register_estimator`, `@jax.jit`); its trampolines also dispatch at call
time, which a `jax.jit` trace runs once and caches, and it forks workers from a process that has
already imported JAX. cosmic-ray writes one mutant into the source file and runs a test command
in a fresh process, so every mutant is traced and compiled for real.

How it runs: the working tree (git's tracked and untracked, not ignored, files) is copied to
WORKDIR/src and mutated there, never in the checkout. Each module below has its own test
command (`pytest -x` over the test files that pin it, fastest killers first, slow tests included);
the copy shares one persistent XLA cache, so a mutant recompiles only what it changed. A run
first checks that every test command passes unmutated.

What is mutated: cosmic-ray's core operators, minus replacements that are no plausible slip and
that Python or JAX refuse outright (arithmetic <-> shifts, %, //, ^ and bitwise; comparisons to
`is`; unary `~`/`not` on numbers; removing a decorator), minus mutations inside the text of a
`raise` (an error message, pinned by the tests that match it) or a `warnings.warn` call. Kept:
every comparison flip, + - * / ** swaps, & <-> |, and <-> or, dropped `-`/`not`/`~`, an added
`not`, number +-1 (axes, ddof, thresholds, constants), True <-> False, zero-iteration loops.

Sampling: the mutants are listed in a stable order (module, line, column, operator) and
`--sample N` draws N of them with `random.Random(seed)`, at least 5 per module. `--shard I/N`
takes every N-th mutant from I (a full run split over N machines or workdirs).
Surviving mutants named in EQUIVALENT (module, the change) are reported as equivalent with
their reason; the score is killed / (killed + survived), equivalents excluded.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKDIR = os.path.join(ROOT, ".mutation")

# module -> (test files, fastest killers first; definitions to mutate, None for all).
_LISTED = {
    "focal/aggregators/base.py": (["tests/test_static.py", "tests/test_pow3r.py",
                                   "tests/test_focal_reward.py"], None),
    "focal/aggregators/static.py": (["tests/test_static.py", "tests/test_metrics.py"], None),
    "focal/aggregators/focal_reward.py": (["tests/test_focal_reward.py",
                                           "tests/test_pow3r_focal.py"], None),
    "focal/aggregators/focal_variants.py": (["tests/test_focal_reward.py"], None),
    "focal/aggregators/pow3r.py": (["tests/test_pow3r.py", "tests/test_pow3r_focal.py"], None),
    "focal/aggregators/pow3r_focal.py": (["tests/test_pow3r_focal.py"], None),
    "focal/aggregators/prompt_state.py": (["tests/test_prompt_state.py", "tests/test_pow3r.py",
                                           "tests/test_focal_reward.py",
                                           "tests/test_components.py"], None),
    "focal/advantages/base.py": (["tests/test_advantages.py"], None),
    "focal/advantages/criterion.py": (["tests/test_advantages.py"], None),
    "focal/advantages/scalar.py": (["tests/test_advantages.py"], None),
    "focal/grpo.py": (["tests/test_grpo.py"], None),
    "focal/rubric.py": (["tests/test_rubric.py", "tests/test_static.py"], None),
    "focal/metrics/evaluation.py": (["tests/test_metrics.py"],
                                    ("healthbench_score", "_clipped_mean", "_category_onehot")),
    "focal/nonfinite.py": (["tests/test_nonfinite.py"], None),
    "focal/sampling.py": (["tests/test_sampling.py"], None),
    "focal/decode_plan.py": (["tests/test_decode_plan.py", "tests/test_sampling.py"], None),
}
# A module added to these packages is mutated too, with its own test file if it has one.
PACKAGES = {"focal/aggregators": "tests/test_components.py",
            "focal/advantages": "tests/test_advantages.py"}


def _groups() -> dict:
  groups = {}
  for package, fallback in PACKAGES.items():
    for name in sorted(os.listdir(os.path.join(ROOT, package))):
      if name.endswith(".py") and name != "__init__.py":
        own = f"tests/test_{name[:-3]}.py"
        groups[f"{package}/{name}"] = ([own if os.path.exists(os.path.join(ROOT, own))
                                        else fallback], None)
  return {**groups, **_LISTED}


GROUPS = _groups()

EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_\w+_(LShift|RShift|FloorDiv|Mod|BitXor)$",
    r"core/ReplaceBinaryOperator_(LShift|RShift|FloorDiv|Mod|BitXor)_\w+$",
    r"core/ReplaceBinaryOperator_(Add|Sub|Mul|Div|Pow)_(BitOr|BitAnd)$",
    r"core/ReplaceBinaryOperator_(BitOr|BitAnd)_(Add|Sub|Mul|Div|Pow)$",
    r"core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Is|IsNot)$",
    r"core/ReplaceUnaryOperator_USub_(UAdd|Invert|Not)$",
    r"core/ReplaceUnaryOperator_Invert_(UAdd|USub|Not)$",
    r"core/ReplaceUnaryOperator_Not_\w+$",
    r"core/RemoveDecorator$",
]

# (module, the mutant's change as the report prints it) -> why it computes the same thing.
EQUIVALENT: dict[tuple[str, str], str] = {
    ("focal/advantages/criterion.py",
     '- zero = few | ~jnp.any(st["live"], -1) / + zero = few | ~jnp.any(st["live"], 1)'):
    "live is [B, K]: axis 1 is axis -1",
    ("focal/aggregators/base.py",
     "- return safe_div(coef, jnp.sum(jnp.abs(coef), -1, keepdims=True)) / "
     "+ return safe_div(coef, jnp.sum(jnp.abs(coef), 1, keepdims=True))"):
    "normalized_weights takes [B, K] coefficients (every caller): axis 1 is axis -1",
    ("focal/aggregators/focal_reward.py",
     "- if w_min > 0.0 or w_max < 1.0: / + if w_min > 0.0 or w_max != 1.0:"):
    "focal_hparams keeps w_max in [w_min, 1]: w_max != 1 is w_max < 1",
    ("focal/aggregators/focal_reward.py",
     "- e = jnp.where(member, jnp.exp(logits - jnp.where(member, top, 0.0)), 0.0) / "
     "+ e = jnp.where(member, jnp.exp(logits - jnp.where(member, top, 1.0)), 0.0)"):
    "the fallback is read only off-member, where logits are -inf (exp gives 0 for any finite "
    "fallback) and the outer where writes 0 anyway; it exists so that -inf - top is not NaN",
    ("focal/aggregators/pow3r_focal.py",
     "- f_hp = focal_reward.focal_hparams(temperature, gamma, focal_eps, 0.0, 1.0, ema) / "
     "+ f_hp = focal_reward.focal_hparams(temperature, gamma, focal_eps, 0.0, 0.0, ema)"):
    "pow3r_focal never reads Focal's w_min / w_max: the literals only pass validation",
    ("focal/metrics/evaluation.py",
     "- counted = jnp.sum(possible, -1) > 0 / + counted = jnp.sum(possible, -1) != 0"):
    "possible = max(points, 0) summed: never negative, so != 0 is > 0",
    ("focal/sampling.py",
     "- prompt_len = jnp.repeat(prompt_mask.sum(-1).astype(jnp.int32), group_size)  # first new "
     "position / + prompt_len = jnp.repeat(prompt_mask.sum(1).astype(jnp.int32), group_size)  "
     "# first new position"):
    "prompt_mask is [B, P]: axis 1 is axis -1",
    ("focal/sampling.py",
     "- prompt_width: int, *, per_layer: bool, share_prefix: bool): / "
     "+ prompt_width: int, /, per_layer: bool, share_prefix: bool):"):
    "_generated_cache's one caller passes per_layer and share_prefix by name: keyword-only or "
    "not, the same call binds the same values",
}


def sh(args, **kw):
  return subprocess.run(args, check=True, text=True, **kw)


def copy_tree(dst: str) -> None:
  """The checkout's tracked and untracked (not ignored) files, copied to `dst`."""
  files = sh(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
             capture_output=True).stdout.split("\0")
  for rel in filter(None, files):
    src = os.path.join(ROOT, rel)
    if os.path.isfile(src):
      os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
      shutil.copy2(src, os.path.join(dst, rel))


def session_name(module: str) -> str:
  return module[:-3].replace("/", ".")


def test_command(module: str) -> str:
  """The module's tests, slow ones included (decoding across the sampler's cache buckets is)."""
  return " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                   "-m", "'slow or not slow'", *GROUPS[module][0]])


def message_lines(source: str) -> set[int]:
  """Lines inside a `raise` statement or a `warnings.warn(...)` call."""
  lines = set()
  for node in ast.walk(ast.parse(source)):
    warn = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "warn")
    if isinstance(node, ast.Raise) or warn:
      lines.update(range(node.lineno, node.end_lineno + 1))
  return lines


def _skip(db, job_id: str, why: str) -> None:
  from cosmic_ray.work_item import WorkerOutcome, WorkResult
  db.set_result(job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=why))


def spec(item):
  return item.mutations[0]


def stable_key(item, src: str):
  m = spec(item)
  return (os.path.relpath(str(m.module_path), src), m.start_pos, m.operator_name, m.occurrence)


def valid_python(item) -> bool:
  """False for a mutant that does not compile: cosmic-ray's parser takes the `*` of `f(*, x)`
  and the `**` of `{**d}` for operators, and swaps them too."""
  import cosmic_ray.plugins
  from cosmic_ray.mutating import mutate_code
  m = spec(item)
  if not re.match(r"core/ReplaceBinaryOperator_(Mul|Pow)_", m.operator_name):
    return True
  operator = cosmic_ray.plugins.get_operator(m.operator_name)(**(m.operator_args or {}))
  code = mutate_code(open(m.module_path).read(), operator, m.occurrence)
  try:
    compile(code or "", str(m.module_path), "exec")
  except SyntaxError:
    return False
  return True


def init_session(db, src: str) -> None:
  """Every mutant of every module, with the filtered ones marked skipped."""
  from cosmic_ray.commands import init
  init([os.path.join(src, m) for m in GROUPS], db, {})
  excluded = re.compile("|".join(f"(?:{e})" for e in EXCLUDED_OPERATORS))
  messages = {m: message_lines(open(os.path.join(src, m)).read()) for m in GROUPS}
  for item in db.pending_work_items:
    m = spec(item)
    module = os.path.relpath(str(m.module_path), src)
    definitions = GROUPS[module][1]
    if excluded.match(m.operator_name):
      _skip(db, item.job_id, "filtered: operator")
    elif m.start_pos[0] in messages[module]:
      _skip(db, item.job_id, "filtered: error or warning message")
    elif definitions is not None and m.definition_name not in definitions:
      _skip(db, item.job_id, "filtered: definition outside the formula")
    elif not valid_python(item):
      _skip(db, item.job_id, "filtered: not valid Python")


def select(db, src: str, sample: int | None, shard: tuple[int, int] | None, seed: int,
           modules: list[str] | None = None) -> None:
  """Marks every pending mutant outside the modules, sample or shard as skipped."""
  items = sorted(db.pending_work_items, key=lambda it: stable_key(it, src))
  if modules:
    chosen = [it for it in items if stable_key(it, src)[0].startswith(tuple(modules))]
    ids = {it.job_id for it in chosen}
    for it in items:
      if it.job_id not in ids:
        _skip(db, it.job_id, "not in --modules")
    items = chosen
  if shard is not None:
    keep = {it.job_id for n, it in enumerate(items) if n % shard[1] == shard[0]}
  elif sample is not None:
    by_module: dict[str, list] = {}
    for it in items:
      by_module.setdefault(stable_key(it, src)[0], []).append(it)
    keep = set()
    for module, its in sorted(by_module.items()):
      n = min(len(its), max(5, round(sample * len(its) / len(items))))
      keep.update(it.job_id for it in random.Random(f"{seed}:{module}").sample(its, n))
  else:
    return
  for it in items:
    if it.job_id not in keep:
      _skip(db, it.job_id, "not in this sample or shard")


def baseline(modules) -> dict[str, float]:
  """Seconds each module's test command takes unmutated (each command once); exits if one fails."""
  seconds: dict[str, float] = {}
  for command in sorted({test_command(m) for m in modules}):
    start = time.monotonic()
    out = subprocess.run(shlex.split(command), capture_output=True, text=True)
    seconds[command] = time.monotonic() - start
    tests = " ".join(w for w in command.split() if w.startswith("tests/"))
    print(f"baseline {tests}: {'ok' if out.returncode == 0 else 'FAILED'} "
          f"({seconds[command]:.0f} s)", flush=True)
    if out.returncode != 0:
      sys.exit(f"the unmutated tests fail: {command}\n{out.stdout[-3000:]}")
  return {m: seconds[test_command(m)] for m in modules}


def execute(db, src: str, skip_baseline: bool = False) -> None:
  """Runs every pending mutant with its module's test command, printing one line each."""
  from cosmic_ray.mutating import mutate_and_test
  pending = sorted(db.pending_work_items, key=lambda it: stable_key(it, src))
  modules = sorted({stable_key(it, src)[0] for it in pending})
  seconds = {m: 120.0 for m in modules} if skip_baseline else baseline(modules)
  limits = {m: max(120.0, 5 * s) for m, s in seconds.items()}
  start = time.monotonic()
  for n, item in enumerate(pending, 1):
    module, (line, _), operator, _ = stable_key(item, src)
    t = time.monotonic()
    result = mutate_and_test(item.mutations, test_command(module), limits[module])
    db.set_result(item.job_id, result)
    done = time.monotonic() - start
    print(f"[{n}/{len(pending)}] {module}:{line} {operator.split('/')[-1]} -> "
          f"{result.test_outcome or result.worker_outcome} ({time.monotonic() - t:.0f} s; "
          f"eta {done / n * (len(pending) - n) / 60:.0f} min)", flush=True)


def _changed_lines(diff: str | None) -> str:
  lines = [ln for ln in (diff or "").splitlines()
           if ln[:1] in "-+" and not ln.startswith(("---", "+++"))]
  return " / ".join(ln[0] + " " + ln[1:].strip() for ln in lines)


def tally(db, src: str):
  """(counts per module, surviving mutants) of a session."""
  from collections import Counter
  from cosmic_ray.work_item import TestOutcome, WorkerOutcome
  counts: dict[str, Counter] = {m: Counter() for m in GROUPS}
  survivors = []
  for item, result in db.completed_work_items:
    module, (line, _), operator, _ = stable_key(item, src)
    c = counts[module]
    if result.worker_outcome == WorkerOutcome.SKIPPED:
      c["filtered" if (result.output or "").startswith("filtered") else "unselected"] += 1
    elif not valid_python(item):
      c["filtered"] += 1  # a run made before the filter existed
    elif result.worker_outcome != WorkerOutcome.NORMAL or \
        result.test_outcome == TestOutcome.INCOMPETENT:
      c["error"] += 1
    elif result.test_outcome == TestOutcome.KILLED:
      c["killed"] += 1
      c["timeout"] += result.output == "timeout"
    else:
      change = _changed_lines(result.diff)
      reason = EQUIVALENT.get((module, change))
      c["equivalent" if reason else "survived"] += 1
      survivors.append({"module": module, "line": line, "operator": operator,
                        "change": change, "equivalent": reason})
  return counts, sorted(survivors, key=lambda s: (s["module"], s["line"]))


def report(workdir: str) -> dict:
  from cosmic_ray.work_db import WorkDB, use_db
  src = os.path.join(workdir, "src")
  with use_db(os.path.join(workdir, "session.sqlite"), WorkDB.Mode.open) as db:
    counts, survivors = tally(db, src)
  total = sum(counts.values(), start=type(next(iter(counts.values())))())
  scored = total["killed"] + total["survived"]
  meta = json.load(open(os.path.join(workdir, "run.json")))
  out = [f"command: {meta['command']}", f"commit: {meta['commit']}",
         f"wall time: {meta.get('seconds', 0) / 60:.1f} min on {os.cpu_count()} cores",
         *[f"then: {r['command']} ({r['seconds'] / 60:.1f} min)" for r in meta["resumes"]],
         "", "| module | run | killed | (timeouts) | survived | equivalent | errors |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for module, c in list(counts.items()) + [("total", total)]:
    run = c["killed"] + c["survived"] + c["equivalent"] + c["error"]
    if not run and module != "total":
      continue
    out.append(f"| {module} | {run} | {c['killed']} | {c['timeout']} | {c['survived']} | "
               f"{c['equivalent']} | {c['error']} |")
  score = total["killed"] / scored if scored else float("nan")
  out += ["", f"score: {total['killed']}/{scored} = {100 * score:.1f}% of the non-equivalent "
          f"mutants killed ({total['filtered']} filtered out, {total['unselected']} not selected)", ""]
  for s in survivors:
    status = f"equivalent: {s['equivalent']}" if s["equivalent"] else "SURVIVED"
    out.append(f"{s['module']}:{s['line']} {s['operator']}: {s['change']}  [{status}]")
  text = "\n".join(out)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(workdir, "report.json"), "w") as f:
    json.dump({"counts": counts, "survivors": survivors, "score": score, **meta}, f, indent=1)
  print(text)
  return {"score": score, "survivors": survivors}


def _reset_survivors(db_path: str, src: str) -> int:
  """Deletes the results of surviving (and errored) mutants, documented equivalents aside, so
  that they run again."""
  import sqlite3
  con = sqlite3.connect(db_path)
  rows = con.execute("SELECT r.job_id, m.module_path, r.diff FROM work_results r JOIN "
                     "mutation_specs m ON m.job_id = r.job_id WHERE r.worker_outcome != "
                     "'SKIPPED' AND (r.test_outcome IS NULL OR r.test_outcome != 'KILLED')")
  again = [(job,) for job, path, diff in rows.fetchall()
           if (os.path.relpath(path, src), _changed_lines(diff)) not in EQUIVALENT]
  with con:
    con.executemany("DELETE FROM work_results WHERE job_id = ?", again)
  con.close()
  return len(again)


def run(args) -> None:
  from cosmic_ray.work_db import WorkDB, use_db
  workdir = os.path.abspath(args.workdir)
  src, db_path = os.path.join(workdir, "src"), os.path.join(workdir, "session.sqlite")
  command = "python tools/mutation.py " + " ".join(sys.argv[1:])
  if args.resume:
    changed = [m for m in GROUPS if open(os.path.join(ROOT, m)).read()
               != open(os.path.join(src, m)).read()]
    if changed:
      sys.exit(f"{changed} changed since the run: mutant positions are stale, start a new run")
    copy_tree(src)  # the tests added since
    meta = json.load(open(os.path.join(workdir, "run.json")))
    print(f"re-testing {_reset_survivors(db_path, src)} surviving mutants", flush=True)
  else:
    shutil.rmtree(workdir, ignore_errors=True)
    copy_tree(src)
    commit = sh(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True).stdout
    meta = {"command": command, "commit": commit.strip(), "resumes": []}
    with use_db(db_path, WorkDB.Mode.create) as db:
      init_session(db, src)
      select(db, src, args.sample, args.shard, args.seed, args.modules)
  os.environ["PYTHONPATH"] = src + os.pathsep + os.environ.get("PYTHONPATH", "")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(workdir, "xla-cache")
  os.chdir(src)
  start = time.monotonic()
  with use_db(db_path, WorkDB.Mode.open) as db:
    execute(db, src, args.skip_baseline)
  seconds = time.monotonic() - start
  if args.resume:
    meta["resumes"].append({"command": command, "seconds": seconds})
  else:
    meta["seconds"] = seconds
  meta["load_average"] = os.getloadavg()
  with open(os.path.join(workdir, "run.json"), "w") as f:
    json.dump(meta, f, indent=1)
  report(workdir)


def _shard(text: str) -> tuple[int, int]:
  i, n = (int(x) for x in text.split("/"))
  if not 0 <= i < n:
    raise argparse.ArgumentTypeError(f"shard {text}: expected I/N with 0 <= I < N")
  return i, n


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="cmd", required=True)
  p_run = sub.add_parser("run", help="copy the tree, make the mutants, run them, report")
  p_run.add_argument("--workdir", default=DEFAULT_WORKDIR)
  group = p_run.add_mutually_exclusive_group()
  group.add_argument("--sample", type=int, help="run N mutants drawn with --seed")
  group.add_argument("--shard", type=_shard, help="run shard I/N of every mutant")
  group.add_argument("--resume", action="store_true",
                     help="re-test the survivors of the last run in --workdir with today's tests")
  p_run.add_argument("--seed", type=int, default=0)
  p_run.add_argument("--modules", nargs="+", help="only modules whose path starts with these")
  p_run.add_argument("--skip-baseline", action="store_true",
                     help="do not first check that the tests pass unmutated (only when they "
                          "just did: a failing test would count every mutant as killed)")
  p_rep = sub.add_parser("report", help="score and survivors of a run")
  p_rep.add_argument("--workdir", default=DEFAULT_WORKDIR)
  args = parser.parse_args(argv)
  if args.cmd == "run":
    run(args)
  else:
    report(os.path.abspath(args.workdir))


if __name__ == "__main__":
  main()
