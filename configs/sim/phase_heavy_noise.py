r"""Phase diagram: weight on saturated criteria (heavy_easy) x judge noise.

  python -m experiments.simulate --config=configs/sim/phase_heavy_noise.py \
      --workdir=results/sim/heavy_noise --figures=docs/img/sim_heavy_noise

The setting in which down-weighting saturated criteria could pay even on the
static score: a heavy criterion that a noisy judge sometimes fails adds
reward variance that carries no learnable signal. Both axes are knobs, so
each method is one compiled program; 128 seeds per cell, the rest as in
configs/sim/phase_rare_saturated.py (16 prompts per seed, 150 steps).
"""
from configs.sim import base, phase_rare_saturated


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  return phase_rare_saturated.get_config(arg)


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg, full={"heavy_easy": (0.0, 0.5, 1.0), "noise": (0.0, 0.05, 0.1, 0.2)},
                        smoke={"heavy_easy": (0.0, 1.0), "noise": (0.0, 0.2)})
