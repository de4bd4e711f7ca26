"""Grouped-query attention of a block of queries over one or several key/value segments.

A query attends with one softmax over the keys of every segment it is given:
  * the call's own tokens (causal among themselves),
  * a KV cache that holds earlier tokens and this call's (decoding; causal by slot),
  * a prompt's prefix cache shared by the G query rows of its group (rollouts and the learn
    step's response pass: a prompt's keys and values exist once, not once per rollout).
A `Segment` has Bs rows of keys; with N query rows, each key row serves N / Bs consecutive query
rows (prompt-major groups). Its `mask` [Bs, S] marks real keys; with an `offset` (the slot of
the first query) query t sees key s iff s <= offset + t, without one every key is seen.

Kernels (`ModelConfig.attention`):
  xla     einsums with the scores and softmax in float32. One segment is exactly
          softmax(q k^T / sqrt(d)) v; several are merged from per-segment partial sums (each
          exponentiated against its own row maximum, as flash attention merges blocks), which is
          one softmax over the concatenated keys up to float rounding. Keeps the [rows, S]
          scores of every segment for the backward pass.
  splash  the Pallas TPU splash kernel that jax ships (blockwise, no [T, S] scores kept for the
          backward pass). The segments become one key sequence (a shared prefix repeated for its
          rows) with a causal mask at the right offset; padding becomes segment ids. Off TPU it
          runs in the Pallas interpreter: slow, for tests.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

# Finite instead of -inf so a fully masked query row (a padding position) gives a uniform, finite
# softmax rather than NaNs that would poison gradients through jnp.where.
MASK_VALUE = -1e30
_LANES = 128  # splash works on blocks of whole lanes: sequences are padded to multiples of this


class Segment(NamedTuple):
  """Keys and values one block of queries attends over.

  k, v: [Bs, Hkv, S, D] (heads before slots: the KV cache layout). mask: [Bs, S] bool, True on
  real keys. offset: None (every key visible) or the slot of the first query (an int or a traced
  scalar): query t sees key s iff s <= offset + t. The queries' own keys are offset 0.
  """
  k: jax.Array
  v: jax.Array
  mask: jax.Array
  offset: object = None


def segment_valid(seg: Segment, t: int) -> jax.Array:
  """[Bs, T or 1, S] bool: which keys of `seg` each of T queries may attend to."""
  valid = seg.mask[:, None, :]
  if seg.offset is not None:
    s = seg.mask.shape[1]
    valid = valid & (jnp.arange(s)[None, :] <= jnp.arange(t)[:, None] + seg.offset)[None]
  return valid


def _grouped(q: jax.Array, bs: int, hkv: int) -> jax.Array:
  """[N, T, H, D] -> [Bs, (N / Bs) * T, Hkv, H / Hkv, D]: rows sharing a key row side by side.

  Query head h reads kv head h // (H / Hkv)."""
  n, t, h, d = q.shape
  return q.reshape(bs, (n // bs) * t, hkv, h // hkv, d)


def _scores(q: jax.Array, seg: Segment) -> jax.Array:
  """Masked float32 scores [Bs, Hkv, H / Hkv, rows, S] of q [N, T, H, D] against a segment."""
  bs, hkv, _, d = seg.k.shape
  t = q.shape[1]
  if q.shape[0] != bs and seg.offset is not None:
    raise ValueError("a segment shared by several query rows must be visible whole (no offset)")
  scores = jnp.einsum("brkgd,bksd->bkgrs", _grouped(q, bs, hkv), seg.k,
                      preferred_element_type=jnp.float32)
  scores = scores / jnp.sqrt(jnp.float32(d))
  return jnp.where(segment_valid(seg, t)[:, None, None, :, :], scores, MASK_VALUE)


def _rows(x: jax.Array, n: int, t: int) -> jax.Array:
  """[Bs, Hkv, H / Hkv, rows, E] -> [N, T, H, E]."""
  bs, hkv, g, _, e = x.shape
  return x.transpose(0, 3, 1, 2, 4).reshape(n, t, hkv * g, e)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, valid: jax.Array) -> jax.Array:
  """One segment on XLA: q [N, T, H, D]; k, v [Bs, Hkv, S, D]; valid [Bs, T or 1, S] bool.

  Returns [N, T, H, D]. Scores and softmax in float32.
  """
  n, t, _, d = q.shape
  bs = k.shape[0]
  scores = jnp.einsum("brkgd,bksd->bkgrs", _grouped(q, bs, k.shape[1]), k,
                      preferred_element_type=jnp.float32)
  scores = scores / jnp.sqrt(jnp.float32(d))
  scores = jnp.where(valid[:, None, None, :, :], scores, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  # The product keeps the (b, k) batch and (g, r) rows of the scores, so XLA's CPU backend runs
  # it as one batched matmul; asking the einsum for [N, T, ...] directly made it compute the
  # transposed product, 4x slower on a decode step (docs/PERFORMANCE.md). Same sums either way.
  out = jnp.einsum("bkgrs,bksd->bkgrd", probs, v)
  return _rows(out, n, t)


def _per_row(x: jax.Array, n: int, t: int) -> jax.Array:
  """[Bs, Hkv, g, rows, E] -> [N, Hkv, g, T, E]: a shared segment's rows back to their queries."""
  bs, hkv, g, _, e = x.shape
  if bs == n:
    return x
  return x.reshape(bs, hkv, g, n // bs, t, e).transpose(0, 3, 1, 2, 4, 5).reshape(n, hkv, g, t, e)


def attend_xla(q: jax.Array, segments: Sequence[Segment]) -> jax.Array:
  """q [N, T, H, D] over `segments` on XLA; returns [N, T, H, D] in q's dtype."""
  n, t, h, d = q.shape
  if len(segments) == 1:
    seg = segments[0]
    return attend(q, seg.k, seg.v, segment_valid(seg, t))
  outs, maxes, sums = [], [], []
  for seg in segments:  # partial sums in the scores' layout: no transposes for per-row segments
    scores = _scores(q, seg)
    # The merged result does not depend on the shift: no gradient through it.
    top = jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
    weights = jnp.exp(scores - top)
    sums.append(_per_row(jnp.sum(weights, axis=-1, keepdims=True), n, t))
    maxes.append(_per_row(top, n, t))
    outs.append(_per_row(jnp.einsum("bkgrs,bksd->bkgrd", weights.astype(seg.v.dtype), seg.v,
                                    preferred_element_type=jnp.float32), n, t))
  top = functools.reduce(jnp.maximum, maxes)
  scale = [jnp.exp(m - top) for m in maxes]
  total = sum(s * w for s, w in zip(sums, scale))
  out = sum(o * w for o, w in zip(outs, scale)) / total  # [N, Hkv, g, T, D]
  return out.transpose(0, 3, 1, 2, 4).reshape(n, t, h, d).astype(q.dtype)


def _pad_to(x: jax.Array, axis: int, size: int, *, front: bool = False, value=0) -> jax.Array:
  pad = [(0, 0)] * x.ndim
  extra = size - x.shape[axis]
  pad[axis] = (extra, 0) if front else (0, extra)
  return jnp.pad(x, pad, constant_values=value)


def _block(length: int) -> int:
  """The largest of 512, 256, 128 that divides `length` (a multiple of 128)."""
  return next(b for b in (512, 256, 128) if length % b == 0)


def _splash_kernel(heads: int, t: int, s: int, interpret: bool):
  """The splash kernel of a causal [t, s] mask whose last t keys are the queries' own."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
  mask = sm.MultiHeadMask([sm.CausalMask((t, s), offset=s - t)] * heads)
  bq, bkv = _block(t), _block(s)
  sizes = sk.BlockSizes(block_q=bq, block_kv=bkv, block_kv_compute=bkv, block_q_dkv=bq,
                        block_kv_dkv=bkv, block_kv_dkv_compute=bkv, block_q_dq=bq,
                        block_kv_dq=bkv)
  # Built inside the trace that uses it (its block tables become that program's constants), so
  # a kernel is never reused across traces.
  return sk.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                            interpret=interpret)


def _round_up(x: int, m: int) -> int:
  return -(-x // m) * m


def splash_layout(segments: Sequence[Segment], query_mask: jax.Array):
  """The segments as one key sequence for the splash kernel.

  Returns (k, v [N, Hkv, S', D], kv_ids [N, S'], q_ids [N, T'], T'), padded so that T' and S'
  are multiples of 128 and the last T' slots are the queries' own (a causal mask at offset
  S' - T' then reproduces every segment's visibility). The queries' own segment (offset 0) must
  come last, after segments visible whole. Segment ids: 1 on real keys and queries,
  0 on padding keys and padding queries (a padding query then sees at least its own key, so no
  row of the softmax is empty), 2 on the slots added to reach whole blocks.
  """
  n, t = query_mask.shape
  *earlier, own = segments
  if (not isinstance(own.offset, int) or own.offset != 0 or own.k.shape[2] != t
      or any(seg.offset is not None for seg in earlier)):
    raise ValueError("splash attention takes segments visible whole, then the queries' own")
  t_pad = _round_up(t, _LANES)
  q_ids = _pad_to(query_mask.astype(jnp.int32), 1, t_pad, value=2)
  k, v = _pad_to(own.k, 2, t_pad), _pad_to(own.v, 2, t_pad)
  kv_ids = _pad_to(own.mask.astype(jnp.int32), 1, t_pad, value=2)
  if not earlier:
    return k, v, kv_ids, q_ids, t_pad
  rows = lambda x, seg: jnp.repeat(x, n // seg.k.shape[0], axis=0)
  before_k = jnp.concatenate([rows(seg.k, seg) for seg in earlier], axis=2)
  before_v = jnp.concatenate([rows(seg.v, seg) for seg in earlier], axis=2)
  before_ids = jnp.concatenate([rows(seg.mask, seg) for seg in earlier], axis=1).astype(jnp.int32)
  # Earlier keys are padded at the front, so that the queries' own slots stay last.
  width = _round_up(before_k.shape[2], _LANES)
  k = jnp.concatenate([_pad_to(before_k, 2, width, front=True), k], axis=2)
  v = jnp.concatenate([_pad_to(before_v, 2, width, front=True), v], axis=2)
  kv_ids = jnp.concatenate([_pad_to(before_ids, 1, width, front=True), kv_ids], axis=1)
  return k, v, kv_ids, q_ids, t_pad


def target_platform() -> str:
  """The platform being compiled for: the mesh's devices' under `jax.set_mesh` (a TPU mesh made
  of topology devices compiles for TPU on a CPU-only machine), else the default backend."""
  mesh = jax.sharding.get_abstract_mesh()
  device = None if mesh.empty else getattr(mesh, "abstract_device", None)
  return device.platform if device is not None else jax.default_backend()


# focal.sharding's mesh axes: batch rows over these, attention heads over 'tensor'.
_BATCH_AXES, _HEAD_AXIS = ("data", "fsdp"), "tensor"


def _on_mesh(run, n: int, heads: int, kv_heads: int):
  """`run` (q, k, v, q_ids, kv_ids) as a shard_map over the context mesh (`jax.set_mesh`), with
  rows over the batch axes and heads over 'tensor': GSPMD cannot partition a Pallas kernel."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return run
  size = lambda axes: math.prod(mesh.shape[a] for a in axes)
  batch = tuple(a for a in _BATCH_AXES if a in mesh.axis_names and mesh.shape[a] > 1)
  batch = batch if batch and n % size(batch) == 0 else None
  t = mesh.shape.get(_HEAD_AXIS, 1)
  head = _HEAD_AXIS if t > 1 and heads % t == 0 and kv_heads % t == 0 else None
  seq, ids = P(batch, head, None, None), P(batch, None)
  return jax.shard_map(run, mesh=mesh, in_specs=(seq, seq, seq, ids, ids), out_specs=seq,
                       check_vma=False)


def attend_splash(q: jax.Array, segments: Sequence[Segment], query_mask: jax.Array,
                  interpret: bool) -> jax.Array:
  """q [N, T, H, D] over `segments` with the splash kernel (see `splash_layout`)."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  n, t, h, d = q.shape
  k, v, kv_ids, q_ids, t_pad = splash_layout(segments, query_mask)
  # The kernel does not scale the scores.
  qh = _pad_to((q / jnp.sqrt(jnp.float32(d)).astype(q.dtype)).transpose(0, 2, 1, 3), 2, t_pad)

  def run(q, k, v, q_ids, kv_ids):
    kernel = _splash_kernel(q.shape[1], t_pad, k.shape[2], interpret)
    one = lambda q1, k1, v1, qi, ki: kernel(q1, k1, v1, sk.SegmentIds(q=qi, kv=ki))
    return jax.vmap(one)(q, k, v, q_ids, kv_ids)

  out = _on_mesh(run, n, h, k.shape[1])(qh, k.astype(q.dtype), v.astype(q.dtype), q_ids, kv_ids)
  return out[:, :, :t].transpose(0, 2, 1, 3)


def uses_splash(attention: str, segments: Sequence[Segment], t: int) -> bool:
  """Whether `attention` ('auto' | 'xla' | 'splash') runs a block of t queries over `segments`
  with splash: blocks of several queries whose own keys are their last segment (not a cache
  they were written into, which decoding reads). 'auto' picks it when compiling for TPU, on
  one device or under `jax.set_mesh` (a Pallas kernel on a mesh needs the shard_map)."""
  own = segments[-1]
  if attention == "xla" or t == 1 or not (isinstance(own.offset, int) and own.offset == 0
                                          and own.k.shape[2] == t):
    return False
  if attention == "splash":
    return True
  mesh = jax.sharding.get_abstract_mesh()
  return target_platform() == "tpu" and (not mesh.empty or jax.device_count() == 1)


def multi_segment_attention(q: jax.Array, segments: Sequence[Segment], query_mask: jax.Array,
                            attention: str = "auto") -> jax.Array:
  """q [N, T, H, D] over `segments` with the kernel `attention` picks; [N, T, H, D]."""
  if uses_splash(attention, segments, q.shape[1]):
    return attend_splash(q, segments, query_mask, interpret=target_platform() != "tpu")
  return attend_xla(q, segments)


__all__ = ["MASK_VALUE", "Segment", "attend", "attend_splash", "attend_xla",
           "multi_segment_attention", "segment_valid", "splash_layout", "target_platform",
           "uses_splash"]
