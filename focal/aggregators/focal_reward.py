"""Focal Reward (arXiv 2605.26579, METHODS §4): reweight criteria toward those with room to improve.

RECONSTRUCTION. The paper's full text was not available. This follows its
abstract (saturation estimated by an "inverse reward projection", then an
online per-criterion reweighting toward criteria with room to improve) and the
one public rubric implementation found, moved to the [0, 1] score scale. Every
knob is a hyper-parameter so the paper's exact form can be dropped in.

Per group of G rollouts of a prompt, on the satisfaction scale (pitfalls flipped):

  b_k   = |w_k| / sum_{l real} |w_l|                      static shares
  d_i   = sum_k b_k s_ik / sum_k b_k                       over rollout i's valid verdicts
  p_i   = softmax_i(d_i / T)                               which rollouts the reward favours
  m_k   = sum_i p_i s_ik                                   over rollouts with a valid verdict for k,
                                                           p renormalised over them
  sat_k = clip(m_k, 0, 1)                                  (0 for a criterion with no verdict)
  f_k   = b_k (1 - sat_k + eps)^gamma / sum_l b_l (1 - sat_l + eps)^gamma
  f     = argmin_{sum f = 1, w_min <= f <= w_max} |f - f_raw|   (only if w_min > 0 or w_max < 1)
  R_i   = sum_k f_k s_ik / sum_k f_k                       over rollout i's valid verdicts

T -> infinity gives the plain group mean for m; gamma = 0 gives the static
weighted mean. Decisions the formulas leave open:
- Infeasible caps are relaxed per prompt, deterministically: if K_real w_min > 1,
  w_min becomes 1/K_real (f is then uniform); if K_real w_max < 1, w_max becomes
  1/K_real. Real criteria with zero human weight get at least the floor.
- If every b_k (1 - sat_k + eps)^gamma is 0 (eps = 0 and all criteria
  saturated), f falls back to b.
- `ema > 0` keeps `sat [num_prompts, K]` and `seen [num_prompts]` across
  visits: the first visit uses the raw estimate, later ones
  ema * old + (1 - ema) * new; a criterion without verdicts in a visit keeps its
  old value (0 before the prompt's first visit).
- `pitfall_mode='signed'`: saturation and f are computed as above and the
  reward is sum_k sign(w_k) f_k s_ik / sum_k f_k over valid verdicts (raw
  scores, so a hit pitfall subtracts), in [-1, 1]. HealthBench's positive-mass
  denominator is not used: Focal shrinks saturated positive criteria toward 0,
  and dividing by their mass would let the pitfalls' share blow up.

Two further knobs select the variants the abstract leaves open (also
reconstructions; formulas in `focal_variants`): `saturation='ema_headroom'`
(a per-criterion EMA of the mean verdict instead of the inverse projection)
and `placement='advantage'` (f scales each criterion's group-normalised
advantage instead of its verdict). Their defaults are the formulas above.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from focal.aggregators import base, focal_variants, prompt_state
from focal.rubric import RubricBatch, apply_pitfalls, check_pitfall_mode, safe_div


class FocalState(NamedTuple):
  sat: Any   # [num_prompts, K] float32, smoothed saturation.
  seen: Any  # [num_prompts] bool, the prompt was visited before.


class FocalHParams(NamedTuple):
  """Focal Reward's hyper-parameters; these defaults are the only place they are set. They are
  METHODS §4's formula with the floor it asks training runs to set (w_min = 0.05, which every
  shipped config and result trains with); w_min = 0 gives the bare formula."""
  temperature: float = 1.0  # softmax temperature of the inverse reward projection ([0, 1] scale)
  gamma: float = 3.0        # focusing exponent on (1 - saturation + eps); 0 = static weights
  eps: float = 0.05         # keeps fully saturated criteria off weight exactly 0
  w_min: float = 0.05       # weight floor per criterion (K * w_min <= 1): prevents collapse
  w_max: float = 1.0        # weight cap per criterion
  ema: float = 0.0          # EMA of saturation across visits of a prompt; 0 = per visit
  saturation: str = "inverse_projection"  # or ema_headroom (focal_variants)
  headroom_decay: float = 0.9  # ema_headroom: M <- decay M + (1 - decay) mean verdict
  placement: str = "reward"  # or advantage: f scales each criterion's advantage (focal_variants)


DEFAULTS = FocalHParams()


def _traced(value) -> bool:
  return isinstance(value, jax.core.Tracer)


def focal_hparams(temperature=DEFAULTS.temperature, gamma=DEFAULTS.gamma, eps=DEFAULTS.eps,
                  w_min=DEFAULTS.w_min, w_max=DEFAULTS.w_max, ema=DEFAULTS.ema,
                  saturation=DEFAULTS.saturation, headroom_decay=DEFAULTS.headroom_decay,
                  placement=DEFAULTS.placement) -> FocalHParams:
  """Validated Focal hyper-parameters (ValueError naming the field)."""
  temperature = base.check_range("temperature", temperature, 0.0, None, lo_open=True)
  gamma = base.check_range("gamma", gamma, 0.0, None)
  eps = base.check_range("eps", eps, 0.0, None)
  w_min = base.check_range("w_min", w_min, 0.0, 1.0)
  w_max = base.check_range("w_max", w_max, w_min, 1.0)
  ema = base.check_range("ema", ema, 0.0, 1.0)
  if ema == 1.0:
    raise ValueError("ema=1.0 is outside [0.0, 1.0): the estimate would never move")
  focal_variants.check_choice("saturation", saturation, focal_variants.SATURATIONS)
  focal_variants.check_choice("placement", placement, focal_variants.PLACEMENTS)
  headroom_decay = base.check_range("headroom_decay", headroom_decay, 0.0, 1.0)
  # Checked only when concrete, so that a traced decay stays a simulator lane.
  if saturation == "ema_headroom" and not _traced(ema) and ema != 0.0:
    raise ValueError(f"ema={ema} smooths the inverse projection; saturation='ema_headroom' "
                     "is an EMA already (its rate is headroom_decay): set ema=0")
  if not _traced(headroom_decay) and headroom_decay == 1.0:
    raise ValueError("headroom_decay=1.0 is outside [0.0, 1.0): M would never move")
  return FocalHParams(temperature, gamma, eps, w_min, w_max, ema, saturation, headroom_decay,
                      placement)


def stateful(hp: FocalHParams) -> bool:
  """Whether Focal keeps a per-prompt table (`FocalState`) across visits."""
  return hp.ema > 0.0 or hp.saturation == "ema_headroom"


def static_shares(rubric: RubricBatch):
  """b [B, K]: |w| normalised over real criteria."""
  w = jnp.abs(jnp.where(rubric.mask, rubric.weights, 0.0))
  return safe_div(w, jnp.sum(w, -1, keepdims=True))


def saturation(s, present_mask, b, temperature: float):
  """Inverse reward projection: each criterion's level among the rollouts the reward favours.

  Args:
    s: [B, G, K] verdicts on the satisfaction scale.
    present_mask: [B, G, K] bool, real criteria with a verdict.
    b: [B, K] non-negative static shares.
    temperature: T > 0 of the softmax over rollouts.

  Returns:
    (sat [B, K] in [0, 1], 0 where no verdict; evidence [B, K] bool, the
    criterion has a verdict from a rollout with a static score).
  """
  bp = b[:, None, :] * present_mask
  mass = jnp.sum(bp, -1)
  d = safe_div(jnp.sum(bp * s, -1), mass)
  member = present_mask & (mass > 0)[:, :, None]
  # Softmax restricted per criterion to the rollouts that judged it: the same
  # as renormalising p over them, but each criterion subtracts its own max so
  # a tiny T cannot underflow every member to 0.
  logits = jnp.where(member, (d / temperature)[:, :, None], -jnp.inf)
  top = jnp.max(logits, 1, keepdims=True)
  e = jnp.where(member, jnp.exp(logits - jnp.where(member, top, 0.0)), 0.0)
  m = safe_div(jnp.sum(e * s, 1), jnp.sum(e, 1))
  return jnp.clip(m, 0.0, 1.0), jnp.any(member, 1)


def project_capped_simplex(x, mask, w_min: float, w_max: float):
  """Euclidean projection of each row of x [B, K] onto {sum f = 1, lo <= f <= hi} over `mask`.

  The projection is clip(x - tau, lo, hi) with tau solving
  phi(tau) = sum_k clip(x_k - tau, lo, hi) = 1. phi is piecewise linear and
  non-increasing with kinks at x_k - lo and x_k - hi, so evaluating it at all
  2K kinks ([B, 2K, K]) brackets tau between two adjacent kinks and linear
  interpolation is exact: no iteration. Per row lo = min(w_min, 1/K_real) and
  hi = max(w_max, 1/K_real) keep the set non-empty. Masked entries return 0.
  """
  k_real = jnp.sum(mask, -1, keepdims=True).astype(jnp.float32)
  uniform = safe_div(1.0, k_real)
  lo = jnp.minimum(w_min, uniform)
  hi = jnp.maximum(w_max, uniform)
  kinks = jnp.concatenate([x - lo, x - hi], -1)                       # [B, 2K]
  phi = jnp.sum(jnp.where(mask[:, None, :],
                          jnp.clip(x[:, None, :] - kinks[:, :, None],
                                   lo[:, :, None], hi[:, :, None]), 0.0), -1)
  above = phi >= 1.0
  below = phi <= 1.0
  # Rounding can leave K_real * hi a hair under 1 (or K_real * lo over it):
  # then the extreme kink is the answer.
  i_a = jnp.where(jnp.any(above, -1), jnp.argmax(jnp.where(above, kinks, -jnp.inf), -1),
                  jnp.argmin(kinks, -1))
  i_b = jnp.where(jnp.any(below, -1), jnp.argmin(jnp.where(below, kinks, jnp.inf), -1),
                  jnp.argmax(kinks, -1))
  t_a = jnp.take_along_axis(kinks, i_a[:, None], -1)
  t_b = jnp.take_along_axis(kinks, i_b[:, None], -1)
  phi_a = jnp.take_along_axis(phi, i_a[:, None], -1)
  phi_b = jnp.take_along_axis(phi, i_b[:, None], -1)
  slope_ok = (t_b > t_a) & (phi_a > phi_b)
  tau = jnp.where(slope_ok, t_a + safe_div((phi_a - 1.0) * (t_b - t_a), phi_a - phi_b), t_a)
  return jnp.where(mask, jnp.clip(x - tau, lo, hi), 0.0)


def saturation_factor(sat, gamma: float, eps: float):
  """(1 - sat + eps)^gamma, elementwise; the base is floored at 0 against rounding."""
  return jnp.power(jnp.maximum(1.0 - sat + eps, 0.0), gamma)


def focal_coefficients(b, sat, mask, gamma: float, eps: float, w_min: float, w_max: float):
  """f [B, K]: static shares b tilted toward unsaturated criteria, summing to 1 over `mask`.

  The capped-simplex projection only runs when w_min > 0 or w_max < 1 (decided
  at trace time): a normalised non-negative f already lies in [0, 1].
  """
  raw = b * saturation_factor(sat, gamma, eps) * mask
  total = jnp.sum(raw, -1, keepdims=True)
  f = jnp.where(total > 0, safe_div(raw, total), b * mask)
  if w_min > 0.0 or w_max < 1.0:
    f = project_capped_simplex(f, mask, w_min, w_max)
  return f


def init_focal_state(num_prompts: int, max_criteria: int) -> FocalState:
  return FocalState(sat=jnp.zeros((num_prompts, max_criteria), jnp.float32),
                    seen=jnp.zeros((num_prompts,), bool))


def smoothed_saturation(sat, evidence, rubric: RubricBatch, state: FocalState, ema: float):
  """EMA of the saturation across visits: (sat_used [B, K], new FocalState)."""
  old = prompt_state.gather_rows(state.sat, rubric.prompt_ids)
  seen = prompt_state.gather_rows(state.seen, rubric.prompt_ids)[:, None]
  blended = jnp.where(seen, ema * old + (1.0 - ema) * sat, sat)
  used = jnp.where(evidence, blended, jnp.where(seen, old, 0.0)) * rubric.mask
  return used, _visited(state, rubric, used)


def _visited(state: FocalState, rubric: RubricBatch, sat) -> FocalState:
  """`state` with this batch's rows of `sat` [B, K] written and its prompts marked seen."""
  return FocalState(
      sat=prompt_state.scatter_rows(state.sat, rubric.prompt_ids, sat),
      seen=prompt_state.scatter_rows(state.seen, rubric.prompt_ids,
                                     jnp.ones_like(rubric.prompt_ids, bool)))


def visit_saturation(scores, valid, rubric: RubricBatch, state, hp: FocalHParams):
  """Saturation used by this visit and the new state (stateless when ema = 0).

  Returns (sat [B, K], b [B, K], new_state).
  """
  _, s = apply_pitfalls(scores, rubric, "flip")
  b = static_shares(rubric)
  if hp.saturation == "ema_headroom":
    old = prompt_state.gather_rows(state.sat, rubric.prompt_ids)
    m = focal_variants.headroom_update(old, s, base.present(valid, rubric), rubric.mask,
                                       hp.headroom_decay)
    return m, b, _visited(state, rubric, m)
  sat, evidence = saturation(s, base.present(valid, rubric), b, hp.temperature)
  if hp.ema > 0.0:
    used, new_state = smoothed_saturation(sat, evidence, rubric, state, hp.ema)
    return used, b, new_state
  return sat * rubric.mask, b, state


def present_mean(coef, f, s, present_mask):
  """R_i = sum_k coef_k s_ik / sum_k f_k over present verdicts; (raw [B, G], has_valid [B, G])."""
  pres = present_mask.astype(jnp.float32)
  den = jnp.sum(f[:, None, :] * pres, -1)
  return safe_div(jnp.sum(coef[:, None, :] * pres * s, -1), den), den > 0


@base.register("focal")
def focal(temperature: float = DEFAULTS.temperature, gamma: float = DEFAULTS.gamma,
          eps: float = DEFAULTS.eps, w_min: float = DEFAULTS.w_min, w_max: float = DEFAULTS.w_max,
          ema: float = DEFAULTS.ema, pitfall_mode: str = "flip",
          saturation: str = DEFAULTS.saturation, headroom_decay: float = DEFAULTS.headroom_decay,
          placement: str = DEFAULTS.placement) -> base.Aggregator:
  """Focal Reward (reconstruction; see the module docstring).

  Args:
    temperature: softmax temperature of the inverse reward projection ([0, 1] score scale).
    gamma: focusing exponent on (1 - saturation + eps); 0 gives the static weights.
    eps: keeps fully saturated criteria from weight exactly 0.
    w_min: weight floor per criterion (K * w_min <= 1); prevents collapse.
    w_max: weight cap per criterion.
    ema: EMA of saturation across visits of a prompt; 0 = per-visit estimate.
    pitfall_mode: flip (pitfalls as avoid-criteria) or signed (HealthBench).
    saturation: inverse_projection (METHODS §4) or ema_headroom (an EMA of each
      criterion's mean verdict; `focal_variants`; needs ema = 0).
    headroom_decay: ema_headroom's decay: M <- decay M + (1 - decay) mean verdict.
    placement: reward (R = the f-weighted mean verdict) or advantage (R = the
      f-weighted sum of per-criterion group-normalised advantages; `focal_variants`).

  State: `EmptyState` when ema = 0 under inverse_projection, else
  `FocalState(sat [P, K], seen [P])` (under ema_headroom `sat` holds M).
  Metrics: `weights` (f, signed under `signed`), `saturation` [B, K], verdict counters.
  """
  hp = focal_hparams(temperature, gamma, eps, w_min, w_max, ema, saturation, headroom_decay,
                     placement)
  check_pitfall_mode(pitfall_mode)
  signed = pitfall_mode == "signed"

  def update(scores, valid, rubric: RubricBatch, state):
    sat, b, new_state = visit_saturation(scores, valid, rubric, state, hp)
    f = focal_coefficients(b, sat, rubric.mask, hp.gamma, hp.eps, hp.w_min, hp.w_max)
    w, s = apply_pitfalls(scores, rubric, pitfall_mode)
    coef = f * jnp.sign(w) if signed else f
    present_mask = base.present(valid, rubric)
    if hp.placement == "advantage":
      raw, has_valid = focal_variants.branch_advantage_sum(coef, s, present_mask, rubric.mask)
    else:
      raw, has_valid = present_mean(coef, f, s, present_mask)
    metrics = {"weights": base.normalized_weights(coef), "saturation": sat,
               **base.verdict_metrics(valid, rubric, has_valid)}
    return base.fill_from_group(raw, has_valid), new_state, metrics

  return base.Aggregator(init_focal_state if stateful(hp) else base.init_empty, update)
