"""What a simulated comparison reports: the headline gains, their labels and the parts of a grid
(read by `focal.sim.report`, which computes them, and `focal.sim.tables`, which reads them back)."""

GAIN_METRICS = {"reward": ("mean_reward_pct", 1.0), "worst": ("worst_category_pass_rate", 100.0),
                "strict": ("strict_completion", 100.0)}
HEADLINES = ("reward", "worst", "speedup")
PART_HEADLINES = ("reward", "worst", "strict", "speedup")   # grids with held-out prompts
LABELS = {"reward": "Δ mean reward (pts)", "worst": "Δ worst category (pts)",
          "strict": "Δ strict completion (pts)", "speedup": "speed-up to plateau (x)"}
PARTS = {"train": "eval", "heldout": "heldout"}   # comparison part -> GridResult part
PART_TITLES = {"heldout": "held-out prompts", "train": "training prompts"}
