r"""Phase diagram: policy parameter sharing x how much response types mean the same across prompts.

  python -m experiments.simulate --config=configs/sim/phase_sharing.py \
      --workdir=results/sim/sharing --figures=docs/img/sim_sharing

policy_sharing = 0 is a tabular policy (each prompt's logits free, Adam
normalising each one: the simulator's most favourable case for any objective);
1 leaves only a shared linear map of 8 prompt features, so an update made for
one prompt moves every other, as a language model's shared weights do.
type_sharing sets how much of a type's pass pattern is common to prompts
(through the features), i.e. how much a shared update can transfer. Both are
knobs; 128 seeds per cell, otherwise as configs/sim/phase_rare_saturated.py.
"""
from configs.sim import base, phase_rare_saturated


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  return phase_rare_saturated.get_config(arg)


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg,
                        full={"policy_sharing": (0.0, 0.5, 1.0), "type_sharing": (0.0, 0.5, 1.0)},
                        smoke={"policy_sharing": (0.0, 1.0), "type_sharing": (0.0, 1.0)})
