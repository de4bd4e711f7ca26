"""Will a run fit a TPU slice? Compile its programs for the slice, without a TPU, and read them.

  python -m experiments.plan --config=configs/paper/pow3r_healthbench.py --topology=v5p-8 \
      --config.model.checkpoint=configs/checkpoints/qwen3-4b --config.mesh.shape='(1,4,1)'

`chips` (published peaks, compile-only devices), `setup` (a run's shapes from its config alone:
config.json, no weights, no data), `programs` (the loop's own programs compiled, memory per
chip), `flops` (trip-counted FLOPs), `report` (fit, roofline, micro-batch search, table, JSON).
"""
from __future__ import annotations

from typing import Callable

from focal.plan.chips import CHIPS, parse_slice  # noqa: F401  (public)
from focal.plan.programs import compile_programs
from focal.plan.report import KNOBS, Plan, search_sizes


def make_plan(config, topology: str, num_prompts: int = 5000, max_criteria: int = 64,
              eval_prompts: int = 0, search: bool = True, only: tuple = (),
              log: Callable[[str], None] = lambda s: None) -> Plan:
  """Compiles `config`'s programs for `topology` (e.g. 'v5p-8'); where one does not fit and
  `search`, finds the largest micro-batch sizes with which it does (a compile per size tried).

  num_prompts, max_criteria: the aggregator state's table (the data's, which the plan does not
  read; `data.max_criteria` wins when set). eval_prompts: held-out prompts evaluated (0: no
  evaluation program); the sampled evaluation draws eval.num_samples per prompt. only: compile
  just these programs (names as printed)."""
  spec = parse_slice(topology)
  log(f"compiling for {spec.name} ({spec.topology_name}, {spec.chips} chips)")
  eval_rows = eval_prompts * max(1, config.eval.num_samples)
  programs, facts = compile_programs(config, spec, num_prompts, max_criteria, eval_rows,
                                     only=tuple(only), log=log)
  settings = {k: int(config.grpo[k]) for k in ("micro_batch_size", "rollout_micro_batch_size")}
  plan = Plan(spec, programs, facts, settings)
  if search:
    for p in programs:
      if plan.program_fits(p):
        continue
      log(f"{p.name} does not fit; searching {', '.join(KNOBS[p.name])}")

      def compile_fn(c, name):
        found = compile_programs(c, spec, num_prompts, max_criteria, eval_rows, only=(name,),
                                 log=log)[0][0]
        log(f"  {name} with " + ", ".join(f"{k}={c.grpo[k]}" for k in KNOBS[name])
            + f": {found.total_gib:.2f} GiB per chip ({'compiled' if found.compiled else 'refused'})")
        return found

      plan.search[p.name] = search_sizes(config, p.name, plan, compile_fn)
  return plan
