"""`grader.kind=rules`: a regex, keyword or length rule per criterion, given in the data
(rubric_jsonl's criteria[].rule), run on decoded text on the host."""
from focal.graders import kinds
from focal.graders.stage import HostGrader, RulesGrader, check_rules


def make(section, source, pitfall_mode: str):
  del section  # the rules are in the data
  check_rules(source)
  return HostGrader(source, RulesGrader(), pitfall_mode)


# A rule's verdict is invalid only on a response it cannot read; the loop stops past the same
# share as for a judge (grader.judge.max_invalid_frac), as it did before kinds were registered.
kinds.register("rules", kinds.GraderKind(make=make, invalid_limit="judge.max_invalid_frac"))
