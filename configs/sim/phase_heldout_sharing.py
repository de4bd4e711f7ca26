r"""Held-out phase diagram: policy parameter sharing x type sharing, judged on held-out prompts.

  python -m experiments.simulate --config=configs/sim/phase_heldout_sharing.py \
      --workdir=results/sim/heldout_sharing --figures=docs/img/sim_heldout_sharing

Each seed's world has 16 training prompts and 32 held-out prompts from the same
population (the same criterion population and shared map of pass patterns,
their own rubrics, features and per-prompt parts; focal/sim/world.py). The
policy trains on the training prompts only; the held-out prompts move only
through the shared linear map, so at policy_sharing = 0 (tabular) they never
move, the control row. type_sharing sets how much of a type's pass pattern is
common to prompts, i.e. how much there is to transfer. Every method of
configs/sim/base.py plus Focal's reconstructed variants and GD²PO (hard and
SNR), 128 seeds per cell, the world and sizes of configs/sim/phase_sharing.py,
whose training-prompt numbers this grid reproduces. docs/SIMULATOR.md reads it.

Expected (31 min here at load average 10): on held-out prompts no method beats
weighted sum on mean rubric reward in any cell; the Focal family loses 0.2 to
0.6 points where types share structure (4 to 8 on the training prompts),
GD²PO-hard up to 2.5; at policy_sharing = 0 every gain is exactly 0.
"""
from configs.sim import base, phase_rare_saturated


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  c = phase_rare_saturated.get_config(arg)
  if arg is None:
    c.methods = base.ALL_METHODS + base.VARIANT_METHODS
    c.sim.num_heldout = 32
  else:
    c.methods = ("focal_adv", "gd2po_snr")
    c.sim.num_heldout = 4
  return c


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg,
                        full={"policy_sharing": (0.0, 0.5, 1.0), "type_sharing": (0.0, 0.5, 1.0)},
                        smoke={"policy_sharing": (0.0, 1.0), "type_sharing": (0.0, 1.0)})
