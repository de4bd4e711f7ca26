"""A rubric-dynamics simulator: the project's aggregators, estimators and GRPO loss on a
controlled stochastic policy over latent response types (docs/SIMULATOR.md).

  knobs.py       the continuous knobs (vmapped)         population.py  rubric populations
  world.py       types, pass tables, initial policy     policy.py      the categorical policy
  judge.py       noisy, sometimes invalid verdicts      engine.py      one run = one lax.scan
  metrics.py     exact METHODS §7 metrics               components.py  configs -> specs, methods
  grid.py        cells x seeds per compiled program     stats.py       paired gains, CIs, steps
  report.py      tables and files                       plots.py       heat maps and curves
  tables.py      tables read back from finished grids
"""
