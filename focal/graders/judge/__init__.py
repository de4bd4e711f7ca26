"""LLM-judge client for OpenAI-compatible /v1/chat/completions endpoints (stdlib HTTP + SQLite).

One request per (prompt, rollout, criterion), as POW3R and HealthBench grade (METHODS section 9):

  from focal.graders.judge import JudgeClient, JudgeConfig
  with JudgeClient(JudgeConfig(base_url="http://127.0.0.1:8765/v1", model="focal-rules",
                               cache_path="runs/x/judge_cache.sqlite")) as client:
    client.preflight()
    scores, valid, stats = client.grade(conversations, responses, criteria, mask, "flip")

Modules: `config` (JudgeConfig, errors), `templates` ("pow3r", "healthbench"), `replies`
(verdict parsing), `transport` (keep-alive HTTP, total deadline), `cache` (SQLite verdicts),
`requests` (arrays <-> distinct requests, counters), `client` (retries, concurrency).
"""
from focal.graders.judge.cache import VerdictCache
from focal.graders.judge.client import JudgeClient, JudgeVerdict
from focal.graders.judge.config import (JudgeCacheError, JudgeConfig, JudgeError,
                                        JudgeUnavailable)
from focal.graders.judge.replies import (MalformedVerdict, Refusal, UnparseableReply,
                                         WrongVerdictCount, parse_verdict)
from focal.graders.judge.requests import GradeStats
from focal.graders.judge.templates import (AVOID_PREFIX, JudgeCriterion, render_conversation,
                                           split_prompt)

__all__ = ["AVOID_PREFIX", "GradeStats", "JudgeCacheError", "JudgeClient", "JudgeConfig",
           "JudgeCriterion", "JudgeError", "JudgeUnavailable", "JudgeVerdict", "MalformedVerdict",
           "Refusal", "UnparseableReply", "VerdictCache", "WrongVerdictCount", "parse_verdict",
           "render_conversation", "split_prompt"]
