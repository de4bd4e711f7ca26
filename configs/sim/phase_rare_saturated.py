r"""Phase diagram: share of rare-but-reachable criteria x share of saturated criteria.

  python -m experiments.simulate --config=configs/sim/phase_rare_saturated.py \
      --workdir=results/sim/rare_saturated --figures=docs/img/sim_rare_saturated

Every method of configs/sim/base.py against weighted sum and category-balanced,
128 seeds per cell, the rest of the world as in base (10% dead criteria, half
the saturated ones carrying the top weight, noisy judge). Sized to run in
minutes on a 2-core CPU: 16 prompts per seed, 150 steps at learning rate 0.1,
by which weighted sum has reached its plateau. docs/SIMULATOR.md reads it.
"""
from configs.sim import base


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  c = base.get_config(arg)
  if arg is None:
    c.sim.num_prompts = 16
    c.sim.steps = 150
    c.knobs.learning_rate = 0.1
  return c


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg, full={"saturated": (0.0, 0.2, 0.4, 0.6), "rare": (0.0, 0.1, 0.2, 0.3)},
                        smoke={"saturated": (0.0, 0.4), "rare": (0.0, 0.3)})
