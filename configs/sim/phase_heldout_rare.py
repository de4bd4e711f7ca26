r"""Held-out phase diagram: share of rare-but-reachable criteria x policy parameter sharing.

  python -m experiments.simulate --config=configs/sim/phase_heldout_rare.py \
      --workdir=results/sim/heldout_rare --figures=docs/img/sim_heldout_rare

Reweighting toward unsaturated criteria is meant to pay where some criteria
are rare but reachable; this grid asks whether it does on prompts the policy
never trained on, as the policy's parameters become shared (0.5: half the
logits tabular; 1: one linear map of prompt features). The tabular row
(policy_sharing = 0) is left out: held-out prompts cannot move there
(configs/sim/phase_heldout_sharing.py shows it). Methods, sizes and held-out
prompts as in phase_heldout_sharing; 128 seeds per cell.

Expected (28 min here at load average 10): without rare criteria every Focal
variant beats weighted sum on held-out mean rubric reward (Focal +0.25, +0.56,
+0.77 points at policy_sharing 0.5, 0.75, 1) while losing 0.3 to 1.9 on the
training prompts; with 10% or more rare criteria the gain is gone.
"""
from configs.sim import base, phase_heldout_sharing


def get_config(arg=None):
  """`arg`: None or 'smoke' (a few seeds and steps; for tests)."""
  return phase_heldout_sharing.get_config(arg)


def get_grid(arg=None):
  """{axis: values}: rows follow the first axis, columns the second."""
  return base.pick_grid(arg,
                        full={"rare": (0.0, 0.1, 0.2, 0.3), "policy_sharing": (0.5, 0.75, 1.0)},
                        smoke={"rare": (0.0, 0.3), "policy_sharing": (0.5, 1.0)})
