"""The simulated world of one run: rubrics, latent response types, and who passes what.

A response is one of M latent types. Per prompt p, a [M, K] table gives the
probability that a response of type m satisfies criterion k (avoids it, for a
pitfall); criteria co-occur and conflict because they share types. The policy
starts from `init_logits` over types. `make_world(key, knobs, ...)` draws all
of it (jittable, vmappable over keys and knobs):

1. Criteria from the population (weights, categories, required, mask).
2. A difficulty class per real criterion (`knobs` module docstring): a
   position in [0, 1) is cut at the shares saturated | rare | dead |
   contrastive. With probability 1 - category_skew the position is uniform;
   otherwise it is the criterion's quantile in the population's category
   distribution (uniform within the category's slice), so category_skew = 1
   makes the class follow the category (low ids easy, high ones hard) while
   the class shares stay those of the knobs.
3. With probability heavy_easy a saturated criterion's |weight| becomes the
   population's largest: heavy weight on criteria with no contrast.
4. Generic types pass a contrastive criterion when
   sqrt(c) Q[p, m] + sqrt(1 - c) (sqrt(rho) phi_p . A[:, m, c_k] + sqrt(1 - rho) E[p, m, k])
   < Phi^-1(contrast_rate), with Q a per-prompt type quality common to all
   criteria (c = cooccurrence: 1 makes every contrastive criterion pass on the
   same types), A [F, M, C] shared by all prompts, phi_p unit prompt features,
   E per prompt, rho = type_sharing; with probability `conflict` an odd slot k's
   pattern is the complement of slot k-1's (both contrastive): no type serves both.
   Saturated criteria pass with `saturated_level`; rare and dead ones with 0.
5. Rare criterion k has a specialist type (type k, so M > K is required): it
   passes k surely, fails the other rare criteria, and fails each other
   reachable criterion with probability `conflict` (buying a rare criterion
   can cost an easy one). Its initial probability is exactly `rare_rate`.
   With probability `rare_sharing` the specialist is instead its category's
   type (type c for category c), the same type on every prompt: it then
   passes every such rare criterion of that category on the prompt, and a
   shared policy map that learns it carries it to other prompts.
6. Generic initial logits ~ init_logit_std N(0, 1).

Held-out prompts (`make_world(..., skills=train.skills)`): a second world drawn
from its own key with the training world's shared map A, so training and
held-out prompts come from one population: the same criterion population and
knobs, the same shared part of the types' pass patterns, their own features,
rubrics, per-prompt parts and initial logits.

All of it comes from one `jax.random.uniform` call, carved into named pieces
(normals by the inverse CDF): each threefry call site costs seconds of XLA
compile time on this CPU, and a world is drawn once per run.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from focal.rubric import RubricBatch
from focal.sim.knobs import Knobs
from focal.sim.population import Population

CONTRASTIVE, SATURATED, RARE, DEAD = 0, 1, 2, 3
CLASS_NAMES = ("contrastive", "saturated", "rare", "dead")


class World(NamedTuple):
  """Everything fixed during a run. Shapes: P prompts, K slots, M types, F features."""
  rubric: RubricBatch  # [P, K] criteria; prompt_ids = arange(P)
  classes: Any         # [P, K] int32 difficulty class (CLASS_NAMES), 0 on padding
  satisfy: Any         # [P, M, K] float32 P(type m satisfies criterion k), 0 on padding
  init_logits: Any     # [P, M] float32 logits of the initial (and reference) policy
  features: Any        # [P, F] float32 unit-norm prompt features
  skills: Any = None   # [F, M, C] float32 A, the part of pass patterns shared by all prompts


def raw_pass_prob(world: World):
  """[P, M, K] P(the judge's criteria_met = 1 | type): a pitfall is met when not avoided."""
  pitfall = (world.rubric.weights < 0)[:, None, :]
  return jnp.where(pitfall, 1.0 - world.satisfy, world.satisfy)


def assign_classes(u, knobs: Knobs, categories, mask, category_shares):
  """[P, K] int32 difficulty classes (step 2 of the module docstring).

  u: [3, P, K] uniforms; category_shares: the population's share per category.
  """
  shares = jnp.asarray(category_shares, jnp.float32)
  starts = jnp.cumsum(shares) - shares
  quantile = starts[categories] + u[1] * shares[categories]
  position = jnp.where(u[2] < knobs.category_skew, quantile, u[0])
  cuts = jnp.cumsum(jnp.stack([knobs.saturated, knobs.rare, knobs.dead]))
  classes = jnp.select([position < cuts[0], position < cuts[1], position < cuts[2]],
                       [SATURATED, RARE, DEAD], CONTRASTIVE)
  return jnp.where(mask, classes, CONTRASTIVE).astype(jnp.int32)


def _contrastive_patterns(quality, shared, own, knobs: Knobs, features, categories):
  """[P, M, K] bool: which generic types pass each criterion if it is contrastive.

  quality [P, M], shared [F, M, C] and own [P, M, K] are standard normals.
  """
  skill = jnp.einsum("pf,fmc->pmc", features, shared)
  skill = jnp.take_along_axis(skill, categories[:, None, :], axis=2)            # [P, M, K]
  latent = jnp.sqrt(knobs.type_sharing) * skill + jnp.sqrt(1.0 - knobs.type_sharing) * own
  latent = (jnp.sqrt(knobs.cooccurrence) * quality[:, :, None]
            + jnp.sqrt(1.0 - knobs.cooccurrence) * latent)
  return latent < ndtri(knobs.contrast_rate)


def _apply_pair_conflicts(u, knobs: Knobs, patterns, classes):
  """Odd slot k takes the complement of slot k-1's pattern with probability `conflict`."""
  k = patterns.shape[2]
  previous = jnp.roll(patterns, 1, axis=2)
  prev_class = jnp.roll(classes, 1, axis=1)
  odd = (jnp.arange(k) % 2 == 1)[None, :]
  paired = (odd & (classes == CONTRASTIVE) & (prev_class == CONTRASTIVE)
            & (u < knobs.conflict))
  return jnp.where(paired[:, None, :], ~previous, patterns)


def _specialists(u, u_shared, knobs: Knobs, satisfy, classes, categories, num_types: int):
  """Rare criteria's specialist rows (step 5); returns (satisfy, specialist [P, M] bool).

  u: [P, M, K] uniforms (conflict breaks); u_shared: [P, K] (category specialists).
  """
  k = classes.shape[1]
  rare = classes == RARE
  kind = jnp.where(u_shared < knobs.rare_sharing, categories, jnp.arange(k)[None, :])
  own = (jnp.arange(num_types)[None, :, None] == kind[:, None, :]) & rare[:, None, :]
  specialist = jnp.any(own, -1)                                                  # [P, M]
  reachable = (classes == CONTRASTIVE) | (classes == SATURATED)
  kept = u >= knobs.conflict
  row = jnp.where(reachable[:, None, :], satisfy * kept, 0.0)
  row = jnp.where(own, 1.0, row)
  return jnp.where(specialist[:, :, None], row, satisfy), specialist


def _initial_logits(normal, knobs: Knobs, specialist):
  """[P, M]: generic logits ~ N(0, std^2); each specialist's initial mass is rare_rate."""
  z = knobs.init_logit_std * normal
  generic_lse = jax.nn.logsumexp(jnp.where(specialist, -jnp.inf, z), -1, keepdims=True)
  count = jnp.sum(specialist, -1).astype(jnp.float32)
  rest = 1.0 - count[:, None] * knobs.rare_rate
  z_special = jnp.log(jnp.maximum(knobs.rare_rate, 1e-12)) + generic_lse - jnp.log(rest)
  return jnp.where(specialist, z_special, z)


def _uniform_pieces(key, shapes: dict) -> dict:
  """One `jax.random.uniform` call carved into arrays of the given shapes."""
  sizes = [math.prod(shape) for shape in shapes.values()]
  flat = jax.random.uniform(key, (sum(sizes),))
  out, start = {}, 0
  for (name, shape), size in zip(shapes.items(), sizes):
    out[name] = flat[start:start + size].reshape(shape)
    start += size
  return out


def _normal(u):
  """Standard normals from uniforms in [0, 1) (inverse CDF, tails clipped at 2^-24)."""
  return ndtri(jnp.clip(u, 2.0 ** -24, 1.0 - 2.0 ** -24))


def make_world(key, knobs: Knobs, population: Population, num_prompts: int, max_criteria: int,
               num_types: int, num_features: int, skills=None) -> World:
  """Draws a world (module docstring). Needs num_types > max_criteria.

  `skills` [F, M, C], if given, replaces the drawn shared map A (held-out prompts
  reuse their training world's); the rest of the draw is unchanged.
  """
  if num_types <= max_criteria:
    raise ValueError(f"num_types={num_types} must exceed max_criteria={max_criteria}: rare "
                     "criterion k uses type k as its specialist and generic types must remain")
  p, k, m, f, c = num_prompts, max_criteria, num_types, num_features, population.num_categories
  u = _uniform_pieces(key, {
      "prompt": (p,), "slots": (3, p, k), "class": (3, p, k),
      "heavy": (p, k), "pair": (p, k), "features": (p, f), "quality": (p, m), "shared": (f, m, c),
      "own": (p, m, k), "specialist": (p, m, k), "init": (p, m),
      # Appended last: the pieces before it are the same whatever follows (threefry's bits
      # are a prefix-stable function of the index), so older worlds are drawn unchanged.
      "rare_shared": (p, k)})
  crit = population.draw(u["prompt"], u["slots"])
  classes = assign_classes(u["class"], knobs, crit.categories, crit.mask,
                           population.category_shares)
  heavy = (classes == SATURATED) & (u["heavy"] < knobs.heavy_easy)
  weights = jnp.where(heavy, jnp.sign(crit.weights) * population.max_abs_weight, crit.weights)
  features = _normal(u["features"])
  features = features / jnp.linalg.norm(features, axis=-1, keepdims=True)
  if skills is None:
    skills = _normal(u["shared"])
  patterns = _contrastive_patterns(_normal(u["quality"]), skills, _normal(u["own"]), knobs,
                                   features, crit.categories)
  patterns = _apply_pair_conflicts(u["pair"], knobs, patterns, classes)
  level = jnp.select([classes == CONTRASTIVE, classes == SATURATED], [1.0, knobs.saturated_level],
                     0.0)[:, None, :]
  satisfy = jnp.where((classes == CONTRASTIVE)[:, None, :], patterns.astype(jnp.float32), level)
  satisfy, specialist = _specialists(u["specialist"], u["rare_shared"], knobs, satisfy, classes,
                                     crit.categories, m)
  satisfy = satisfy * crit.mask[:, None, :]
  rubric = RubricBatch(weights=weights, categories=crit.categories, required=crit.required,
                       mask=crit.mask, prompt_ids=jnp.arange(p, dtype=jnp.int32))
  return World(rubric=rubric, classes=classes, satisfy=satisfy,
               init_logits=_initial_logits(_normal(u["init"]), knobs, specialist),
               features=features, skills=skills)
