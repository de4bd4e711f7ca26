r"""Phase diagram in GD²PO's own regime: 2-3 criteria per prompt, group size x conflict.

  python -m experiments.simulate --config=configs/sim/phase_few_criteria.py \
      --workdir=results/sim/few_criteria --figures=docs/img/sim_few_criteria

GD²PO was built for two or three rewards (correctness, format, length; helpful,
harmless) and 4 rollouts per prompt (its scripts: rollout.n=4); a HealthBench
rubric has about ten criteria, among which some pair disagrees on almost every
rollout. Here every prompt has at most 3 criterion slots (the HealthBench
population capped at K = 3: 2 or 3 criteria), the group size is GD²PO's 4 or
POW3R's 16, and `conflict` sets how often two criteria exclude each other, the
disagreement GD²PO filters. Training prompts only (the tabular policy of
configs/sim/phase_rare_saturated.py); 128 seeds per cell.

Expected (11 min here at load average 10): GD²PO loses mean rubric reward to
GDPO in every cell (hard 2.8 to 6.0 points, SNR 1.8 to 3.9; `python -m
focal.sim.report paired results/sim/few_criteria gd2po gdpo`) and gains strict
completion at G = 4 (hard +1.0 to +2.7 points).
"""
from configs.sim import base, phase_rare_saturated


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  c = phase_rare_saturated.get_config(arg)
  c.methods = ("gdpo", "gd2po", "gd2po_snr", "focal", "focal_adv", "pow3r")
  c.sim.max_criteria = 3
  if arg == "smoke":
    c.methods = ("gd2po",)
    c.sim.num_types = 8
  return c


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg, full={"group_size": (4, 16), "conflict": (0.0, 0.3, 0.6)},
                        smoke={"group_size": (4,), "conflict": (0.0, 0.6)})
