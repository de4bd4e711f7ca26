r"""Focal Reward against the static baselines on the synthetic suite (the Focal paper's table).

Reproduce (the reduced grid this CPU can afford: 4 aggregators x 3 seeds, tiny model, suite):

  python -m experiments.sweep --config=configs/paper/focal.py --workdir=runs/focal_paper

One run alone:

  python -m experiments.train --config=configs/paper/focal.py --workdir=runs/focal_seed0

Expected on this 2-core CPU (docs/RESULTS.md section 1; about 14 min at load 2-3):
held-out greedy mean rubric reward at step 200, mean ± std over seeds 0-2, from 36.7
at step 0 (the warm-started policy):

  weighted_sum 49.18 ± 0.64   category_balanced 49.15 ± 1.33
  pow3r        48.09 ± 2.03   focal             50.03 ± 1.51

Every aggregator ends within about 2 points of 49, inside the seed noise; their
order changes with the machine and with code changes that reorder floating-point
work or the sampler's random stream (RESULTS.md records four orders), so read a
re-run by mean ± std.
The paper's full grid is 6 benchmarks x 3 model scales (18 comparisons), 216 runs:

  python -m experiments.sweep --config=configs/paper/focal.py:full --workdir=results/focal_full \
      --only=model=tiny     # then model=small, model=base; finished runs are skipped

On this CPU one grid point (3 vmapped seeds, 200 steps) trains in a median of
2.2 min at tiny, 9 min at small and 20-91 min at base (the train_seconds column of
results/focal_full/results.csv: 20-36 min on an AMD EPYC, 42-66 min on an
Intel Xeon, 54-91 min on the first machine), plus a warm start per (task, scale,
seed) of 6-20 min at base: about 1 h, 4-5 h and 30 h a slice. The grid is trained
slice by slice (a stopped sweep resumes from its checkpoints); results/focal_full
keeps every run's metrics in git. Expected (docs/RESULTS.md section 4, all 216 runs,
trained before the sampler's random stream changed, so a re-run samples other rollouts):
Focal beats the strongest static baseline in 4 of the 18 (task, scale) settings on
held-out mean rubric reward (2 ties), none by more than its paired seed std; POW3R
beats weighted sum in 7 of 18 and category-balanced in 7 of 18.
"""
import itertools

from configs import base


def get_config(arg=None):
  """`arg`: None (the paper recipe), 'full' (the same, seeds vmapped for the grid), 'smoke'."""
  if arg not in (None, "full", "smoke"):
    raise ValueError(f"unknown variant {arg!r}; choose None, 'full' or 'smoke'")
  c = base.get_config("tiny" if arg == "smoke" else None)
  # A grid point's three seeds train as one vmapped program (benchmarks/seeds.py times it).
  c.vmap_seeds = arg == "full"
  # Focal at its factory's defaults (focal.aggregators.focal_reward.FocalHParams: T = 1,
  # gamma = 3, eps = 0.05, floor w_min = 0.05), as the built-in default trains it.
  c.aggregator.name = "focal"  # the paper's method
  return c


def get_sweep(arg=None):
  """Grid of overrides: `None` (the reduced grid), 'full' (6 tasks x 3 scales), 'smoke' (tests)."""
  aggregators = ("weighted_sum", "category_balanced", "pow3r", "focal")
  if arg == "smoke":
    return [{"aggregator.name": a, "seed": s} for a, s in itertools.product(aggregators[:2], (0, 1))]
  if arg == "full":
    from focal import tasks
    # Scale-major, so a grid trained slice by slice (--only=model=tiny) completes whole
    # (task, model) settings in order, cheapest first.
    return [{"aggregator.name": a, "task": t, "model": m, "seed": s}
            for m, t, a, s in itertools.product(("tiny", "small", "base"), tasks.names(),
                                                aggregators, (0, 1, 2))]
  if arg is not None:
    raise ValueError(f"unknown sweep {arg!r}; choose None, 'full' or 'smoke'")
  return [{"aggregator.name": a, "seed": s} for a, s in itertools.product(aggregators, (0, 1, 2))]
