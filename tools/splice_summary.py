"""Splice a sweep's summary.md into one section of docs/RESULTS.md, keeping its prose.

  python tools/splice_summary.py results/focal_full/summary.md docs/RESULTS.md --section "## 4. " \
      --image results/focal_full/gaps.png=docs/img/full_gaps.png

A sweep's `summary.md` (written by `experiments.sweep`, rebuilt by `--report_only`) starts at
`## Final held-out metrics`; RESULTS.md nests it two levels deeper under a numbered section.
The block replaced runs from the section's first `#### <first summary heading>` line up to the
section's first image line (`![`), or to the next `## ` section when it has no image. The
summary's "Finished: ..." preamble and its "Plots: ..." line are dropped (RESULTS shows the
plots themselves). Prose above the block and the images and readings below it are kept.
`--image SRC=DST` copies a plot next to the doc. Re-running on an unchanged summary changes
nothing, so the regeneration is safe to repeat.
"""
from __future__ import annotations

import argparse
import shutil


def _demote(line: str, levels: int) -> str:
  return "#" * levels + line if line.startswith("#") else line


def splice(results: str, summary: str, section: str, levels: int = 2) -> str:
  """`results` with `section`'s tables replaced by `summary`'s, headings demoted by `levels`."""
  lines = summary.splitlines()
  start = next((i for i, l in enumerate(lines) if l.startswith("## ")), None)
  if start is None:
    raise ValueError("summary has no '## ' heading to splice")
  body = [_demote(l, levels) for l in lines[start:] if not l.startswith("Plots:")]
  while body and not body[-1].strip():
    body.pop()
  doc = results.splitlines()
  heads = [i for i, l in enumerate(doc) if l.startswith(section)]
  if len(heads) != 1:
    raise ValueError(f"expected one line starting {section!r} in the results doc, found {len(heads)}")
  head = heads[0]
  end_section = next((i for i in range(head + 1, len(doc)) if doc[i].startswith("## ")), len(doc))
  first = body[0]
  begin = next((i for i in range(head + 1, end_section) if doc[i] == first), None)
  if begin is None:
    raise ValueError(f"section {section!r} has no line {first!r} to start the splice at")
  stop = next((i for i in range(begin, end_section) if doc[i].startswith("![")), end_section)
  new = doc[:begin] + body + [""] + doc[stop:]
  return "\n".join(new) + ("\n" if results.endswith("\n") else "")


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("summary", help="a sweep's summary.md")
  p.add_argument("results", help="the doc to update in place (docs/RESULTS.md)")
  p.add_argument("--section", required=True, help="the section's heading prefix, e.g. '## 4. '")
  p.add_argument("--levels", type=int, default=2, help="how many levels to demote the summary's headings")
  p.add_argument("--image", action="append", default=[], metavar="SRC=DST", help="copy a plot")
  args = p.parse_args(argv)
  with open(args.summary) as f:
    summary = f.read()
  with open(args.results) as f:
    results = f.read()
  try:
    updated = splice(results, summary, args.section, args.levels)
  except ValueError as e:
    raise SystemExit(str(e))
  for pair in args.image:
    src, sep, dst = pair.partition("=")
    if not sep:
      raise SystemExit(f"--image wants SRC=DST, got {pair!r}")
    shutil.copyfile(src, dst)
  if updated != results:
    with open(args.results, "w") as f:
      f.write(updated)
  print(f"{args.results}: section {args.section.strip()!r} "
        f"{'updated' if updated != results else 'unchanged'}")


if __name__ == "__main__":
  main()
