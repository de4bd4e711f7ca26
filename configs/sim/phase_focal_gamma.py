r"""Phase diagram of a hyper-parameter: Focal Reward's focusing exponent gamma x share of
rare-but-reachable criteria.

  python -m experiments.simulate --config=configs/sim/phase_focal_gamma.py \
      --workdir=results/sim/focal_gamma --figures=docs/img/sim_focal_gamma

Asks whether some gamma makes Focal beat the static baselines where the default
(gamma = 3) does not. gamma is a lane like the knobs (one compiled program for
all 16 cells x 128 seeds); the baselines run each rare share once. The world
is configs/sim/base.py's, sized like the other phase diagrams (16 prompts per
seed, 150 steps at learning rate 0.1). docs/SIMULATOR.md reads it.
"""
from configs.sim import base, phase_rare_saturated


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  c = phase_rare_saturated.get_config(arg)
  c.methods = ("focal",)  # the method whose hyper-parameter is the grid axis
  return c


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(
      arg, full={"aggregator.focal.gamma": (0.0, 1.0, 3.0, 5.0), "rare": (0.0, 0.1, 0.2, 0.3)},
      smoke={"aggregator.focal.gamma": (0.0, 2.0), "rare": (0.0, 0.3)})
