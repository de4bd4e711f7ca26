"""One-time migration of the config.json files older Focal versions wrote (issue 35).

  python tools/migrate_results.py results/            # every config.json under it, in place
  python tools/migrate_results.py --check results/    # say what would change; write nothing

The readers accept one layout only (focal.resume.outdated names what marks an older one), so
the compatibility code they carried is gone and each older file is rewritten once, here:

  training runs   `model: NAME` becomes the block {scale: NAME, ...}; every block and field the
                  run's config lacks is added at the value the readers gave it when absent,
                  which is configs/base.py's default (data.source synthetic, grader.kind
                  programmatic, no eval judge, mesh.ref_memory_kind device, W&B off, LoRA rank
                  0, the model's compute fields, each aggregator's and estimator's block with
                  its factory's defaults). Fields the run has keep their values.
  simulator runs  ({"config", "provenance"}, experiments.simulate) `grpo.kl_beta` is named
                  `grpo.beta`, as in the training config.

Idempotent: a file already in today's layout is left byte for byte. The provenance entry is
kept as it was (it records the run, not the layout).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import base  # noqa: E402
from focal import resume, rundir  # noqa: E402


def _fill(saved: dict, template: dict) -> dict:
  """`saved` with every key of `template` it lacks added (nested), its own values kept."""
  out = dict(saved)
  for key, value in template.items():
    if key not in out:
      out[key] = copy.deepcopy(value)
    elif isinstance(value, dict) and isinstance(out[key], dict):
      out[key] = _fill(out[key], value)
  return out


def migrate_run(config: dict) -> dict:
  """A training run's saved config (without provenance) in today's layout."""
  config = dict(config)
  if isinstance(config.get("model"), str):  # the readers took it as the scale's name
    config["model"] = {"scale": config["model"]}
  return _fill(config, json.loads(base.get_config().to_json_best_effort()))


def migrate_sim(config: dict) -> dict:
  grpo = dict(config.get("grpo", {}))
  if "kl_beta" in grpo:
    grpo["beta"] = grpo.pop("kl_beta")
  return {**config, "grpo": grpo} if "grpo" in config else config


def migrated(data: dict) -> dict:
  """The whole config.json `data` in today's layout (the same dict when nothing changes)."""
  if set(data) == {"config", "provenance"}:  # a simulator run
    return {**data, "config": migrate_sim(data["config"])}
  record = {k: v for k, v in data.items() if k != rundir.PROVENANCE}
  out = migrate_run(record)
  if rundir.PROVENANCE in data:
    out[rundir.PROVENANCE] = data[rundir.PROVENANCE]
  return out


def config_files(root: str) -> list[str]:
  if os.path.isfile(root):
    return [root]
  return sorted(os.path.join(d, rundir.CONFIG) for d, _, names in os.walk(root)
                if rundir.CONFIG in names)


def migrate_file(path: str, write: bool = True) -> bool:
  """Whether `path` needed migrating (rewritten in place when `write`)."""
  with open(path) as f:
    data = json.load(f)
  if not isinstance(data, dict) or not ("aggregator" in data or "config" in data):
    return False  # not a run's config (a Hugging Face checkpoint's, say)
  new = migrated(data)
  if new == data:
    return False
  if set(new) != {"config", "provenance"}:
    left = resume.outdated({k: v for k, v in new.items() if k != rundir.PROVENANCE})
    assert not left, f"{path}: still outdated after migration: {left}"
  if write:
    with open(path, "w") as f:
      json.dump(new, f, indent=2)
  return True


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("paths", nargs="+", help="run directories, trees of them, or config.json files")
  parser.add_argument("--check", action="store_true", help="list what would change; write nothing")
  args = parser.parse_args(argv)
  files = [f for p in args.paths for f in config_files(p)]
  changed = [f for f in files if migrate_file(f, write=not args.check)]
  for f in changed:
    print(("would migrate " if args.check else "migrated ") + f)
  print(f"{len(changed)} of {len(files)} config.json files {'need' if args.check else 'were'} "
        "migrating")
  return 0


if __name__ == "__main__":
  sys.exit(main())
