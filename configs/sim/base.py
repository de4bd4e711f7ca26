r"""The rubric-dynamics simulator's default setting (docs/SIMULATOR.md): every method, one setting.

  python -m experiments.simulate --config=configs/sim/base.py --workdir=runs/sim
  python -m experiments.simulate --config=configs/sim/base.py:smoke --workdir=/tmp/sim   # seconds

The default world is HealthBench-shaped and polarised the way docs/RESULTS.md
reads the synthetic suite: a third of the criteria saturated (half of those
carrying the top weight), a tenth dead, a fifth rare but reachable, a noisy
judge. Every field below can be overridden with `--config.<path>=value`.
"""
import ml_collections

from focal import components as run_components
from focal.sim import components
from focal.sim.engine import GRPO_FIELDS, OPTIMIZER_FIELDS

ALL_METHODS = ("focal", "pow3r", "pow3r_focal", "gdpo", "dvao", "sa_mrpo")
# Focal's reconstructed variants (focal/aggregators/focal_variants.py) and GD²PO's two variants.
VARIANT_METHODS = ("focal_adv", "focal_headroom", "focal_headroom_adv", "focal_unofficial",
                   "gd2po", "gd2po_snr")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg`: None (the default setting) or 'smoke' (a few seeds and steps; for tests)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # first seed; a cell runs seeds seed .. seed + num_seeds - 1 (a seed fixes the world)
  c.num_seeds = 128  # seeds per cell (paired across methods)
  c.lanes_per_call = 512  # (cell, seed) lanes per compiled call; bounds memory, not results
  c.methods = ALL_METHODS  # compared with each baseline: aggregators or criterion estimators
  c.baselines = ("weighted_sum", "category_balanced")  # the static references of every comparison
  c.scalar_estimator = "grpo"  # advantage estimator fed by the aggregators' rewards
  c.plateau_share = 0.9  # steps to plateau: steps to this share of the baseline's own gain
  c.thresholds = (30.0, 35.0, 40.0, 45.0)  # mean rubric reward (%) levels for steps-to-threshold

  c.sim = components.spec_block(components.SPEC_FIELDS)  # focal.sim.engine.SimSpec: shapes, steps
  c.grpo = components.spec_block(GRPO_FIELDS)  # the real loop's GRPOSettings: mu, clip, KL beta
  c.optimizer = components.spec_block(OPTIMIZER_FIELDS)  # make_optimizer's clip and decay (rate: knobs)

  _knobs(c)

  # Hyper-parameters per aggregator (the factories' defaults); a grid may vary them.
  c.aggregator = run_components.aggregator_config("focal")
  del c.aggregator.name  # methods name the aggregators here
  c.estimator = run_components.advantage_config("grpo")  # hyper-parameters per advantage estimator
  del c.estimator.name  # methods and scalar_estimator name them here

  # Named variants a method list may use: {of: aggregator or criterion estimator, overrides}.
  c.variants = ml_collections.ConfigDict()
  c.variants.focal_adv = {"of": "focal", "placement": "advantage"}  # f scales branch advantages
  c.variants.focal_headroom = {"of": "focal", "saturation": "ema_headroom"}  # EMA of mean verdict
  c.variants.focal_headroom_adv = {  # both reconstructions together
      "of": "focal", "saturation": "ema_headroom", "placement": "advantage"}
  c.variants.focal_unofficial = {  # the unofficial implementation: H / sum H on branch advantages
      "of": "focal", "saturation": "ema_headroom", "placement": "advantage", "gamma": 1.0,
      "eps": 0.0, "w_min": 0.0}
  c.variants.gd2po_snr = {"of": "gd2po", "variant": "snr"}  # GD²PO-SNR, tau 0.8 (its scripts)

  if arg == "smoke":
    c.num_seeds = 4
    c.lanes_per_call = 4
    c.methods = ("focal", "pow3r")
    c.baselines = ("weighted_sum",)
    c.sim.num_prompts = 4
    c.sim.max_criteria = 8
    c.sim.num_types = 12
    c.sim.group_size = 4
    c.sim.steps = 8
    c.sim.log_every = 4
    c.knobs.rare_rate = 0.05
  elif arg is not None:
    raise ValueError(f"unknown preset {arg!r}; choose None or 'smoke'")
  return c


def _knobs(c: ml_collections.ConfigDict) -> None:
  """The world and the judge: what the phase diagrams vary (focal.sim.knobs.Knobs)."""
  c.knobs = ml_collections.ConfigDict()
  c.knobs.saturated = 0.3  # share of criteria that almost every response type passes
  c.knobs.rare = 0.2  # share of rare-but-reachable criteria (one specialist type passes them)
  c.knobs.dead = 0.1  # share of criteria no type passes
  c.knobs.rare_rate = 0.03  # initial probability of each rare criterion's specialist type (< 1/K)
  c.knobs.rare_sharing = 0.0  # P(a rare criterion's specialist is its category's, on all prompts)
  c.knobs.saturated_level = 0.98  # pass probability of a saturated criterion per generic type
  c.knobs.contrast_rate = 0.5  # share of generic types passing a contrastive criterion
  c.knobs.cooccurrence = 0.0  # 1: contrastive criteria pass on the same types (no trade-offs)
  c.knobs.conflict = 0.3  # P(paired criteria exclude each other) = P(a specialist breaks one)
  c.knobs.category_skew = 0.5  # 0: difficulty independent of category; 1: category decides it
  c.knobs.heavy_easy = 0.5  # probability that a saturated criterion carries the top weight
  c.knobs.type_sharing = 0.5  # share of a type's pass pattern common to all prompts
  c.knobs.init_logit_std = 1.0  # std of the initial policy's logits over generic types
  c.knobs.policy_sharing = 0.0  # 0: tabular logits per prompt; 1: one linear map of features
  c.knobs.policy_bias = 0.0  # 1: that map has a per-type offset (a constant feature); 0: none
  c.knobs.noise = 0.05  # judge flips a verdict with this probability (nano judge: ~0.09)
  c.knobs.invalid = 0.02  # judge gives no verdict with this probability
  c.knobs.learning_rate = 0.05  # AdamW learning rate of the policy logits


def pick_grid(arg, full: dict, smoke: dict) -> dict:
  """A phase config's get_grid: `full` for arg None, `smoke` for 'smoke' (tests)."""
  if arg == "smoke":
    return smoke
  if arg is not None:
    raise ValueError(f"unknown grid {arg!r}; choose None or 'smoke'")
  return full
