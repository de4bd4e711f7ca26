r"""Phase diagram: co-occurrence x conflict, the trade-off structure between criteria.

  python -m experiments.simulate --config=configs/sim/phase_tradeoff.py \
      --workdir=results/sim/tradeoff --figures=docs/img/sim_tradeoff

cooccurrence = 1 makes every contrastive criterion pass on the same response
types (improving one improves all: nothing to trade); conflict pairs criteria
that no type satisfies together and lets buying a rare criterion break an easy
one. Both are knobs; 128 seeds per cell, otherwise as
configs/sim/phase_rare_saturated.py.
"""
from configs.sim import base, phase_rare_saturated


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  return phase_rare_saturated.get_config(arg)


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg, full={"cooccurrence": (0.0, 0.5, 0.9), "conflict": (0.0, 0.3, 0.6)},
                        smoke={"cooccurrence": (0.0, 1.0), "conflict": (0.0, 0.6)})
