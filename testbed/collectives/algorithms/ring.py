"""Ring algorithms, chunked and pipelined as NCCL does.

The ring visits ranks in ``order`` (a permutation; position ``p`` sends to
position ``p+1``), so a topology-aware order (:mod:`testbed.collectives.order`)
keeps each site's ranks contiguous.

* allreduce = reduce-scatter then allgather over the ring (2(m-1) steps).
  The buffer is cut into ``K`` chunks (``nchunks``, or enough that one message
  -- a chunk's 1/m segment -- is at most ``chunk_bytes``). Each chunk runs its
  own ring; a chunk's step ``s`` at a rank waits only for that chunk's step
  ``s-1`` arriving there, so chunks pipeline around the ring as NCCL's do.
* reduce_scatter / allgather: one phase of the above, each rank's block cut
  into ``K`` chunks.
* broadcast: a pipelined chain from the root around the ring; reduce: the
  chain towards the root (each hop adds its own contribution).
* alltoall: pairwise exchange in ``n-1`` steps (step ``s``: send to the rank
  ``s`` positions ahead; a step starts when the previous one's data arrived).
* sendrecv: rank ``r`` sends to ``r+1`` (nccl-tests' pattern; ``order`` unused).

The two primitives :func:`ring_reduce_scatter` and :func:`ring_allgather` are
reused by the hierarchical algorithm.

Ordering argument for the ring phases (the schedule invariant): at position
``p`` every segment is written once by the reduce-scatter (a reduce, except
the segment ``p`` itself, never written there) and once by the allgather (a
copy); the send of a segment at step ``s`` depends on its write at step
``s-1``, and the allgather copy of a segment reaches ``p`` only through the
chain that started with ``p``'s own reduce-scatter send of it.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from testbed.collectives.algorithms._common import check_order, chunk_count, chunks, rotate_to
from testbed.collectives.schedule import (
    COPY,
    REDUCE,
    Region,
    Schedule,
    ScheduleBuilder,
    split_range,
)

__all__ = ["OPS", "build", "ring_reduce_scatter", "ring_allgather", "ring_allreduce"]

OPS = ("allreduce", "reduce_scatter", "allgather", "broadcast", "reduce", "alltoall", "sendrecv")

DepMap = Mapping[int, Tuple[int, ...]]


def _base(deps_at: Optional[DepMap], rank: int) -> Tuple[int, ...]:
    return tuple(deps_at.get(rank, ())) if deps_at else ()


def ring_reduce_scatter(b: ScheduleBuilder, ranks: Sequence[int], owned: Sequence[Region],
                        deps_at: Optional[DepMap] = None) -> Dict[int, Tuple[int, ...]]:
    """Reduce-scatter around ``ranks``: position ``p`` ends with ``owned[p]`` summed.

    ``deps_at[rank]`` (transfers received by that rank) precede every send of
    that rank. Returns, per rank, the deps a later phase reading its owned
    region must wait for.
    """
    m = len(ranks)
    prev: List[Optional[int]] = [None] * m
    for s in range(m - 1):
        new: List[Optional[int]] = [None] * m
        for p in range(m):
            q = (p + 1) % m
            region = owned[(p - s - 1) % m]
            deps = _base(deps_at, ranks[p]) + ((prev[p],) if s else ())
            new[q] = b.add(ranks[p], ranks[q], region, REDUCE, deps)
        prev = new
    return {ranks[p]: tuple(d for d in _base(deps_at, ranks[p]) + (prev[p],) if d is not None)
            for p in range(m)}


def ring_allgather(b: ScheduleBuilder, ranks: Sequence[int], owned: Sequence[Region],
                   deps_at: Optional[DepMap] = None) -> Dict[int, Tuple[int, ...]]:
    """Allgather around ``ranks``: every position ends with every ``owned[p]``.

    ``deps_at`` as in :func:`ring_reduce_scatter`; returns per rank all its
    receipts (and ``deps_at``), for a phase that follows.
    """
    m = len(ranks)
    prev: List[Optional[int]] = [None] * m
    received: Dict[int, List[int]] = {r: list(_base(deps_at, r)) for r in ranks}
    for s in range(m - 1):
        new: List[Optional[int]] = [None] * m
        for p in range(m):
            q = (p + 1) % m
            region = owned[(p - s) % m]
            deps = _base(deps_at, ranks[p]) + ((prev[p],) if s else ())
            new[q] = b.add(ranks[p], ranks[q], region, COPY, deps)
            if new[q] is not None:
                received[ranks[q]].append(new[q])
        prev = new
    return {r: tuple(ids) for r, ids in received.items()}


def ring_allreduce(b: ScheduleBuilder, ranks: Sequence[int], region: Region,
                   deps_at: Optional[DepMap] = None) -> Dict[int, Tuple[int, ...]]:
    """Allreduce of ``region`` around ``ranks`` (reduce-scatter + allgather)."""
    owned = split_range(region[0], region[1], len(ranks))
    done = ring_reduce_scatter(b, ranks, owned, deps_at)
    return ring_allgather(b, ranks, owned, done)


def _blocks_chunked(order: List[int], count: int, k: int) -> List[List[Region]]:
    """Per chunk, per ring position: chunk k of the block of the rank at that position."""
    per_rank = [chunks((r * count, (r + 1) * count), k) for r in order]
    return [[per_rank[p][i] for p in range(len(order))] for i in range(k)]


def build(op: str, ranks: int, count: int, root: int = 0, order: Optional[Sequence[int]] = None,
          chunk_bytes: Optional[int] = None, nchunks: Optional[int] = None) -> Schedule:
    """The ring schedule of ``op`` (see the module docstring for each operation)."""
    ring = check_order(order, ranks)
    b = ScheduleBuilder()
    n = ranks
    if op == "allreduce":
        k = chunk_count(count, n, chunk_bytes, nchunks)
        for region in chunks((0, count), k):
            ring_allreduce(b, ring, region)
    elif op in ("reduce_scatter", "allgather"):
        k = chunk_count(count, 1, chunk_bytes, nchunks)
        for owned in _blocks_chunked(ring, count, k):
            if op == "reduce_scatter":
                # position p ends with owned[p]: its own block
                ring_reduce_scatter(b, ring, owned)
            else:
                ring_allgather(b, ring, owned)
    elif op in ("broadcast", "reduce"):
        k = chunk_count(count, 1, chunk_bytes, nchunks)
        chain = rotate_to(ring, root)
        for region in chunks((0, count), k):
            if op == "broadcast":
                prev = None
                for i in range(n - 1):
                    prev = b.add(chain[i], chain[i + 1], region, COPY, (prev,))
            else:
                prev = None
                for i in range(n - 1, 0, -1):
                    prev = b.add(chain[i], chain[i - 1], region, REDUCE, (prev,))
    elif op == "alltoall":
        base = n * count
        prev: List[Optional[int]] = [None] * n
        for s in range(1, n):
            new: List[Optional[int]] = [None] * n
            for p in range(n):
                q = (p + s) % n
                src, dst = ring[p], ring[q]
                new[q] = b.add(src, dst, (dst * count, (dst + 1) * count), COPY, (prev[p],),
                               dst_region=(base + src * count, base + (src + 1) * count))
            prev = new
    elif op == "sendrecv":
        if n > 1:
            for r in range(n):
                b.add(r, (r + 1) % n, (0, count), COPY, dst_region=(count, 2 * count))
    params = {"order": ring, "chunk_bytes": chunk_bytes, "nchunks": nchunks}
    return b.build(op, "ring", ranks, count, root, params)
