"""What a plan says: fit per program against the chip's HBM with headroom, a roofline time,
the largest micro-batch sizes that fit, as a table and as JSON.

Fit: a program fits when its total per chip (resident state + its inputs, outputs,
temporaries and code) is at most (1 - headroom) x HBM; the run fits when every program does.
Roofline: max(FLOPs / peak bf16 FLOP/s, bytes / HBM bandwidth) per chip, from XLA's cost
analysis with every loop's trip count (focal.plan.flops): a lower bound on the program's time
(no communication, perfect overlap; decode assumes every rollout runs to the length cap).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable

from focal.plan.chips import Slice
from focal.plan.programs import Program

HEADROOM = 0.1
# Each program's micro-batch setting (grpo.<field>), and the rollouts it divides.
KNOBS = {"learn": ("micro_batch_size",), "rollout": ("rollout_micro_batch_size",),
         "evaluate": ("rollout_micro_batch_size",),
         "train": ("micro_batch_size", "rollout_micro_batch_size")}


@dataclasses.dataclass
class Plan:
  spec: Slice
  programs: list[Program]
  facts: dict
  settings: dict                 # the grpo micro-batch settings compiled
  headroom: float = HEADROOM
  search: dict = dataclasses.field(default_factory=dict)  # program -> {setting: size or None}

  @property
  def usable_gib(self) -> float:
    return (1 - self.headroom) * self.spec.chip.hbm_gib

  def program_fits(self, p: Program) -> bool:
    return p.compiled and p.total_gib <= self.usable_gib

  @property
  def fits(self) -> bool:
    return all(self.program_fits(p) for p in self.programs)

  def roofline(self, p: Program) -> tuple[float, str]:
    chip = self.spec.chip
    compute, memory = p.flops / chip.peak_flops, p.bytes_accessed / chip.hbm_bytes_per_s
    return max(compute, memory), "compute" if compute >= memory else "HBM"

  def to_json(self) -> dict:
    programs = {}
    for p in self.programs:
      seconds, bound = self.roofline(p)
      programs[p.name] = {
          "compiled": p.compiled, "fits": self.program_fits(p), "total_gib": p.total_gib,
          "excess_gib": max(p.total_gib - self.usable_gib, 0.0),
          "resident_gib": p.resident_gib, "inputs_gib": p.inputs_gib,
          "output_gib": p.output_gib, "temp_gib": p.temp_gib, "code_gib": p.code_gib,
          "host_gib": p.host_gib, "compile_s": p.compile_s, "flops": p.flops,
          "bytes_accessed": p.bytes_accessed, "xla_flops": p.xla_flops,
          "xla_bytes_accessed": p.xla_bytes, "roofline_s": seconds, "bound": bound,
          "error": p.error}
    chip = self.spec.chip
    return {"topology": self.spec.name, "chip": chip.name, "chips": self.spec.chips,
            "hbm_gib_per_chip": chip.hbm_gib, "headroom": self.headroom,
            "usable_gib_per_chip": self.usable_gib, "peak_bf16_flops": chip.peak_flops,
            "hbm_bytes_per_s": chip.hbm_bytes_per_s, "chip_source": chip.source,
            "compiled": all(p.compiled for p in self.programs), "fits": self.fits,
            "settings": self.settings, "facts": self.facts, "programs": programs,
            "step_roofline_s": sum(v["roofline_s"] for v in programs.values()),
            "search": self.search}

  def format(self) -> str:
    chip, f = self.spec.chip, self.facts
    lines = [f"{self.spec.name}: {self.spec.chips} x TPU {chip.name}, {chip.hbm_gib:g} GiB HBM "
             f"per chip ({self.usable_gib:.1f} GiB usable with {self.headroom:.0%} headroom), "
             f"mesh {tuple(f['mesh'])}",
             f"run: {f['params'] / 1e9:.2f}B parameters"
             + (f" ({f['trainable'] / 1e6:.1f}M trainable: LoRA)" if "trainable" in f else "")
             + f", {f['prompts']} prompts x "
             f"{f['rollouts'] // f['prompts']} rollouts, prompts {f['prompt_tokens']} tokens; "
             + ", ".join(f"grpo.{k}={v}" for k, v in self.settings.items()),
             "state per chip: " + ", ".join(
                 f"{k} {v:.2f} GiB" for k, v in f["state_gib"].items())
             + f" (reference in {f['ref_memory_kind']} memory)",
             "",
             "| program | resident | inputs | output | temp | code | total GiB/chip | fits | "
             "compile s | TFLOP/chip | GB/chip | roofline s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in self.programs:
      seconds, bound = self.roofline(p)
      total = f"{p.total_gib:.2f}" if p.compiled else f">= {p.total_gib:.2f}"
      lines.append(
          f"| {p.name} | {p.resident_gib:.2f} | {p.inputs_gib:.2f} | {p.output_gib:.2f} | "
          f"{p.temp_gib:.2f} | {p.code_gib:.3f} | {total} | "
          f"{'yes' if self.program_fits(p) else 'NO'} | {p.compile_s:.0f} | "
          + (f"{p.flops / 1e12:.1f} | {p.bytes_accessed / 1e9:.1f} | {seconds:.2f} ({bound}) |"
             if p.compiled else f"{p.flops / 1e12:.1f} | - | >= {seconds:.2f} (compute) |"))
    lines.append("")
    for p in self.programs:
      if not self.program_fits(p):
        why = (f"does not compile: {p.error}" if not p.compiled else
               f"needs {p.total_gib:.2f} GiB per chip, {p.total_gib - self.usable_gib:.2f} GiB "
               f"over the usable {self.usable_gib:.1f}")
        lines.append(f"{p.name} does not fit: {why}")
      if p.host_gib:
        lines.append(f"{p.name}: {p.host_gib:.2f} GiB per chip of host memory (the reference)")
    for name, found in self.search.items():
      lines.append(f"largest micro-batch sizes that fit {name}: " + ", ".join(
          f"grpo.{k}={'none' if v is None else v}" for k, v in found.items()))
    lines.append(f"FITS: every program fits {self.spec.name}" if self.fits else
                 f"DOES NOT FIT {self.spec.name}")
    return "\n".join(lines)


def candidates(total: int, shards: int) -> list[int]:
  """Micro-batch sizes to try, largest first: divisors of `total` rollouts that are multiples
  of the devices the rows are split over (`shards`), so that every device works on each."""
  sizes = [d for d in range(total, 0, -1) if total % d == 0 and d % shards == 0]
  return sizes or [d for d in range(total, 0, -1) if total % d == 0]


def largest_fitting(sizes: list[int], fits: Callable[[int], bool]) -> int | None:
  """The largest of `sizes` (descending) for which `fits`, by bisection (memory grows with
  the micro-batch); None if not even the smallest fits."""
  lo, hi, best = 0, len(sizes) - 1, None
  while lo <= hi:
    mid = (lo + hi) // 2
    if fits(sizes[mid]):
      best, hi = sizes[mid], mid - 1
    else:
      lo = mid + 1
  return best


def with_settings(config, **grpo):
  """A copy of `config` with grpo fields replaced."""
  c = copy.deepcopy(config)
  for k, v in grpo.items():
    c.grpo[k] = v
  return c


def search_sizes(config, program: str, plan: Plan, compile_fn) -> dict:
  """{setting: largest size with which `program` fits} (None: none fits), compiling only
  that program for each size tried (`compile_fn(config, program) -> Program`)."""
  rollouts = plan.facts["rollouts"]
  total = {"micro_batch_size": rollouts // config.grpo.num_minibatches,
           "rollout_micro_batch_size": rollouts}
  knobs = KNOBS[program]

  def fits(size):
    return plan.program_fits(compile_fn(with_settings(config, **{k: size for k in knobs}),
                                        program))

  whole = math.gcd(*(total[k] for k in knobs))
  # Only sizes below the one that did not fit (0 means the whole batch at once).
  current = min(config.grpo[k] or total[k] for k in knobs)
  sizes = [s for s in candidates(whole, plan.facts["batch_shards"]) if s < current]
  best = largest_fitting(sizes, fits)
  return {k: best for k in knobs}
