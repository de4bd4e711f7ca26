"""Metrics, in three modules by where they are computed:

  evaluation  METHODS §7 rubric metrics and HealthBench's official score (jittable; evaluation,
              the simulator and reports use them)
  step        the metrics of one GRPO iteration, computed inside the jitted step
  rows        host side: a step's device metrics flattened into the stable `train/...` row keys
"""
from focal.metrics.evaluation import compute_metrics, healthbench_score, steps_to_threshold  # noqa: F401
