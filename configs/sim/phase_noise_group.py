r"""Phase diagram: judge noise x group size G.

  python -m experiments.simulate --config=configs/sim/phase_noise_group.py \
      --workdir=results/sim/noise_group --figures=docs/img/sim_noise_group

Judge noise is a knob (vmapped); the group size changes array shapes, so each
G is its own compiled program per method. 128 seeds per cell; the world is
configs/sim/base.py's. To keep it in minutes the methods are the three
adaptive aggregators and GDPO (the criterion-level estimator most exposed to
noisy per-criterion standardisation), 16 prompts per seed, 150 steps.
"""
from configs.sim import base


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  c = base.get_config(arg)
  if arg is None:
    c.methods = ("focal", "pow3r", "pow3r_focal", "gdpo")
    c.sim.num_prompts = 16
    c.sim.steps = 150
    c.knobs.learning_rate = 0.1
  return c


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg, full={"group_size": (4, 8, 16), "noise": (0.0, 0.05, 0.1, 0.2)},
                        smoke={"group_size": (4,), "noise": (0.0, 0.2)})
