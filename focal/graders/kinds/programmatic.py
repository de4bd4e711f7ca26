"""`grader.kind=programmatic`: the data source's own jittable checks (the synthetic suite's),
fused into the jitted train step; evaluation calls them jitted."""
from focal.graders import kinds
from focal.graders.stage import InJitGrader


def make(section, source, pitfall_mode: str):
  del section, pitfall_mode  # the checks read no config and score each criterion's own sense
  return InJitGrader(source)


kinds.register("programmatic", kinds.GraderKind(make=make, in_jit=True))
