"""Step-0 diagnostics of every synthetic task's warm-start reference responses.

For each task: G reference responses per prompt at the warm-start quality,
graded; prints the share of (prompt, criterion) groups saturated / dead /
contrastive, per-criterion and per-category pass rates, the correlation between
human weight and per-criterion variance, and how weighted_sum splits its weight
(including the share it puts on zero-signal criteria). Figures only, no timing.

  python benchmarks/task_diagnostics.py [--prompts 64] [--group 16] [--seed 0] [--quality 0.5]
  python benchmarks/task_diagnostics.py --policy [--model tiny]   # the warm-started policy instead

With --policy the groups are G samples from the policy that RL starts from
(configs/base.py's warm start for --model and --seed; its cache is reused), which
is what the papers' step-0 diagnostic measures.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import focal.tasks as tasks
from focal.tasks.diagnostics import _pearson, diagnose, task_diagnostics


def policy_diagnostics(num_prompts: int, group: int, seed: int, model: str) -> list:
  """Diagnostics of G samples per train prompt from the warm-started policy, task by task."""
  import jax
  import jax.numpy as jnp

  from configs import base
  from focal import components, sampling
  config = base.get_config()
  config.seed, config.model.scale = seed, model
  config.data.train_prompts_per_task = max(num_prompts, config.data.train_prompts_per_task)
  setup = components.build(config)
  source = setup.source
  tokens, mask = source.train_prompts
  out = []
  for t_index, task in enumerate(source.suite.tasks):
    rows = np.flatnonzero(source.suite.task_index(source.train_set.features) == t_index)[:num_prompts]
    rep = lambda a: jnp.asarray(np.repeat(np.asarray(a)[rows], group, axis=0))
    sample = sampling.sample(setup.graphdef, setup.state.params, rep(tokens), rep(mask),
                             jax.random.key(seed + t_index), max_new_tokens=config.grpo.max_new_tokens,
                             temperature=config.grpo.temperature, eos_id=tasks.EOS, pad_id=tasks.PAD)
    feats = rep(source.train_set.features)[:, 1:1 + task.num_features]
    scores = np.asarray(jax.jit(task.grade)(feats, sample.tokens, sample.mask))
    ts, k = source.train_set, task.num_criteria
    prompts = tasks.PromptSet(
        prompt_ids=ts.prompt_ids[rows], tokens=[ts.tokens[r] for r in rows],
        features=ts.features[rows, 1:1 + task.num_features], weights=ts.weights[rows, :k],
        categories=ts.categories[rows, :k] - source.suite.category_offsets[t_index],
        required=ts.required[rows, :k], mask=ts.mask[rows, :k])
    out.append(diagnose(prompts, scores.reshape(len(rows), group, -1),
                        [c.name for c in task.criteria], task.categories))
  return out


def print_task(name, d) -> None:
  print(f"\n=== {name}: saturated {d.saturated:.0%}  dead {d.dead:.0%}  "
        f"contrastive {d.contrastive:.0%}  corr(|w|, var) {d.weight_variance_corr:+.2f}")
  print(f"    weighted_sum: mean reward {d.mean_reward:.3f}, weight on zero-signal criteria "
        f"{d.zero_signal_pressure:.0%}, zero-variance groups {d.zero_variance_groups:.0%}; "
        f"strict completion {d.strict_completion:.0%}")
  print(f"    {'criterion':<12} {'w':>5} {'pass':>5} {'var':>6} {'sat':>5} {'dead':>5} {'ws_w':>5}")
  for k, cname in enumerate(d.criterion_names):
    print(f"    {cname:<12} {d.weights[k]:>5.1f} {d.pass_rate[k]:>5.2f} {d.variance[k]:>6.3f} "
          f"{d.saturated_frac[k]:>5.0%} {d.dead_frac[k]:>5.0%} {d.ws_weight[k]:>5.0%}")
  print("    category      pass  ws_weight")
  for cat, rate in d.category_pass.items():
    print(f"    {cat:<13} {rate:>4.2f}  {d.category_ws_weight[cat]:>5.0%}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--prompts", type=int, default=64)
  parser.add_argument("--group", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quality", type=float, default=tasks.WARM_START_QUALITY)
  parser.add_argument("--policy", action="store_true",
                      help="sample the warm-started policy instead of reference responses")
  parser.add_argument("--model", default="tiny", help="model scale for --policy")
  args = parser.parse_args(argv)
  if args.policy:
    print(f"{args.prompts} train prompts x G={args.group} samples of the warm-started "
          f"{args.model} policy (configs/base.py), seed {args.seed}")
    all_d = policy_diagnostics(args.prompts, args.group, args.seed, args.model)
  else:
    print(f"{args.prompts} train prompts x G={args.group} reference responses, "
          f"quality {args.quality}, seed {args.seed}")
    all_d = [task_diagnostics(tasks.get(name), args.prompts, args.group, args.seed, args.quality)
             for name in tasks.names()]
  for name, d in zip(tasks.names(), all_d):
    print_task(name, d)
  w = np.concatenate([np.abs(d.weights) for d in all_d])
  v = np.concatenate([d.variance for d in all_d])
  worst = [min(d.category_pass, key=d.category_pass.get) for d in all_d]
  print("\n=== suite (equal prompts per task)")
  print(f"    saturated {np.mean([d.saturated for d in all_d]):.0%}  "
        f"dead {np.mean([d.dead for d in all_d]):.0%}  "
        f"contrastive {np.mean([d.contrastive for d in all_d]):.0%}  "
        f"(POW3R, real models: 17-26% saturated, 20-33% dead)")
  print(f"    corr(|w|, var) pooled over {w.size} criteria: {_pearson(w, v):+.2f}")
  print(f"    weighted_sum weight on zero-signal criteria: "
        f"{np.mean([d.zero_signal_pressure for d in all_d]):.0%}")
  print("    worst category per task: " + ", ".join(
      f"{d_name}/{c} {d.category_pass[c]:.2f}" for d_name, d, c in zip(tasks.names(), all_d, worst)))


if __name__ == "__main__":
  main()
