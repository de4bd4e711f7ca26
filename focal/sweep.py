"""Grid runs over config overrides: skip what is finished, resume what is not, then report."""
from __future__ import annotations

import copy
import os

import ml_collections
from tqdm.auto import tqdm

from focal import components, loop, policy, report
from focal.report import plots
from focal.rundir import RunDir


def run_name(overrides: dict) -> str:
  """A readable, filesystem-safe directory name for one grid point."""
  short = {"aggregator.name": "agg"}
  parts = [f"{short.get(k, k.split('.')[-1])}={v}" for k, v in sorted(overrides.items())]
  return ",".join(parts).replace("/", "_").replace(" ", "")


# Grid keys that name a field by its older, shorter path (run names keep the short form).
ALIASES = {"model": "model.scale"}


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields replaced; unknown fields raise with the known ones."""
  config = copy.deepcopy(config)
  for dotted, value in overrides.items():
    if dotted in ALIASES and isinstance(config.get(dotted), ml_collections.ConfigDict):
      dotted = ALIASES[dotted]
    node = config
    *path, last = dotted.split(".")
    for p in path:
      if p not in node:
        raise ValueError(f"sweep override {dotted!r}: no field {p!r}; known: {sorted(node.keys())}")
      node = node[p]
    if last not in node:
      raise ValueError(f"sweep override {dotted!r}: no field {last!r}; known: {sorted(node.keys())}")
    node[last] = value
  return config


def is_finished(run_dir: str, total_steps: int) -> bool:
  return RunDir(run_dir).is_finished(total_steps)


def parse_only(specs) -> dict[str, set[str]]:
  """`["model=tiny", "task=keywords,digitsum"]` -> {"model": {"tiny"}, "task": {...}}."""
  only: dict[str, set[str]] = {}
  for spec in specs or ():
    field, sep, values = spec.partition("=")
    if not sep or not field or not values:
      raise ValueError(f"--only {spec!r}: expected FIELD=VALUE[,VALUE...], e.g. model=tiny")
    only.setdefault(field, set()).update(values.split(","))
  return only


def select(grid: list[dict], only: dict[str, set[str]] | None) -> list[dict]:
  """The grid points whose overrides match every `only` field (values compared as text)."""
  if not only:
    return list(grid)
  fields = {k for o in grid for k in o}
  for field, values in only.items():
    if field not in fields:
      raise ValueError(f"--only {field}=...: the grid sets no {field!r}; it sets {sorted(fields)}")
    known = {str(o[field]) for o in grid if field in o}
    if values - known:
      raise ValueError(f"--only {field}: {sorted(values - known)} not in the grid; "
                       f"it has {sorted(known)}")
  return [o for o in grid if all(str(o.get(f)) in v for f, v in only.items())]


NO_RUNS = "no finished runs yet"  # write_report's answer when it has nothing to write


class EmptyGrid(ValueError):
  """A sweep's grid holds no run."""


def run_sweep(config, grid: list[dict], workdir: str, train: bool = True,
              only: dict[str, set[str]] | None = None, progress: bool = True,
              **resume_options) -> str:
  """Trains every grid point not finished yet and writes results.csv, summary.md and plots.

  `only` restricts training to a slice of the grid (see `select`); the report
  always covers every finished run of the whole grid. With `progress`, each grid
  point shows its own step bar under the sweep's, and a line with its final
  held-out reward when it finishes. `resume_options` go to `loop.run_group`
  (allow_data_change, allow_missing_rows). Returns the summary markdown, or
  `NO_RUNS` when no run has finished (then nothing is written).
  """
  if not grid:
    raise EmptyGrid("the sweep's grid is empty: get_sweep() returned no grid point, so there "
                    "is nothing to train or report")
  os.makedirs(workdir, exist_ok=True)
  configs = [(o, apply_overrides(config, o)) for o in grid]
  for overrides, cfg in configs:  # fail on any bad grid point before training anything
    components.validate(cfg)
  if train:
    chosen = {run_name(o) for o in select(grid, only)}
    todo = [(o, c) for o, c in configs if run_name(o) in chosen
            and not is_finished(os.path.join(workdir, run_name(o)), c.total_steps)]
    for group in tqdm(seed_groups(todo), desc="sweep", unit="group"):
      dirs = [os.path.join(workdir, run_name(o)) for o, _ in group]
      loop.run_group([c for _, c in group], dirs, progress=progress, **resume_options)
      if progress:
        for d in dirs:
          reward = RunDir(d).last_eval_row().get("eval/mean_rubric_reward", float("nan"))
          tqdm.write(f"finished {os.path.basename(d)}: held-out mean rubric reward {reward:.2f}")
  return write_report(configs, workdir)


def seed_groups(points: list) -> list[list]:
  """Grid points as groups to train together: points that differ only in seed share one
  vmapped program (on the config's mesh) when their config says `vmap_seeds`; others run
  alone."""
  groups: dict = {}
  for overrides, cfg in points:
    if cfg.vmap_seeds:
      key = run_name({k: v for k, v in overrides.items() if k != "seed"})
      groups.setdefault(key, []).append((overrides, cfg))
    else:
      groups[run_name(overrides)] = [(overrides, cfg)]
  return list(groups.values())


def _start_check(rows) -> str:
  """One line saying whether each seed's aggregators trained from the same warm start."""
  bad = report.start_mismatches(rows)
  if not bad:
    return ("Shared starts: at every (task, model, seed), all aggregators start from the same "
            "warm-started policy (equal step-0 held-out metrics), so the paired gaps compare like "
            "with like.")
  return ("**Warning: different starts.** These seeds' aggregators trained from different "
          "warm-started policies (a warm start recomputed on another machine), so their paired "
          "gaps and wins mix in the start's difference; retrain them from one warm start: "
          + "; ".join(bad) + ".")


def write_report(configs, workdir: str) -> str:
  """Tables and plots over the finished runs; a run still training is left out."""
  rows, curves = [], {}
  for overrides, cfg in configs:
    run_dir = os.path.join(workdir, run_name(overrides))
    if not is_finished(run_dir, cfg.total_steps):
      continue
    row = report.summarize_run(run_dir, {"aggregator.name": cfg.aggregator.name, "task": cfg.task,
                                         "model": policy.model_name(cfg), "seed": cfg.seed,
                                         **overrides})
    rows.append(row)
    # One run per (model, aggregator, task) for the per-category curves: the first seed.
    # Category keys carry the task's name, so the tasks' rows can share one list.
    by_task = curves.setdefault(policy.model_name(cfg), {}).setdefault(cfg.aggregator.name, {})
    by_task.setdefault(cfg.task, RunDir(run_dir).rows())
  if not rows:
    return NO_RUNS
  report.write_csv(rows, os.path.join(workdir, "results.csv"))
  names = []
  for model, per_agg in curves.items():
    name = "category_curves.png" if len(curves) == 1 else f"category_curves_{model}.png"
    fig = plots.plot_category_curves({a: [r for t in sorted(ts) for r in ts[t]]
                                      for a, ts in per_agg.items()})
    fig.savefig(os.path.join(workdir, name), dpi=100, bbox_inches="tight")
    names.append(name)
  plots.plot_polarization(rows).savefig(os.path.join(workdir, "polarization.png"), dpi=110)
  gaps = plots.plot_gaps(rows)
  if gaps is not None:
    gaps.savefig(os.path.join(workdir, "gaps.png"), dpi=110)
  settings = {(c.task, policy.model_name(c)) for _, c in configs}
  done = {(r["task"], r["model"]) for r in rows}
  complete = sum(
      all(is_finished(os.path.join(workdir, run_name(o)), c.total_steps)
          for o, c in configs if (c.task, policy.model_name(c)) == s) for s in settings)
  summary = "\n\n".join([
      f"Finished: {len(rows)} of {len(configs)} runs; {complete} of {len(settings)} (task, model) "
      f"settings complete ({len(done)} with at least one finished run).",
      "## Final held-out metrics (mean ± std over seeds)", report.results_table(rows),
      "## Wins", _start_check(rows), report.wins_section(rows) or "(no comparable aggregators in this grid)",
      "## Steps to reach each mean-rubric-reward threshold (greedy eval; n reached / seeds; "
      "×speed-up over weighted_sum)", report.steps_table(rows),
      "## Steps to reach a share of weighted sum's final gain over the warm start (each task on "
      "its own scale; 100% = weighted sum's plateau; n reached / seeds; ×speed-up)",
      report.gain_steps_table(rows),
      "## Learning and where the signal is (held-out; dead / saturated: groups of sampled "
      "responses no sample passes / every sample passes)",
      report.signal_table(rows),
      f"Plots: {', '.join(names)} (per-category pass rate by aggregator, first seed), "
      "polarization.png" + (", gaps.png (each aggregator minus weighted sum, paired by seed)."
                            if gaps is not None else ".")])
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write(summary + "\n")
  return summary
