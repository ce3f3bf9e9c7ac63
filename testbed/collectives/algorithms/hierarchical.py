"""Hierarchical allreduce: reduce-scatter in each site, allreduce across sites, allgather.

``groups`` lists the ranks of each site (every rank exactly once; the order
inside a group is that site's ring order, the order of groups the cross-site
ring's). Default: one site holding every rank (a plain ring allreduce).

For each pipelined chunk of the buffer:

1. reduce-scatter inside each site (ring): the rank at position ``i`` of a
   site ends with shard ``i`` of the chunk summed over its site;
2. allreduce across sites (ring) between the ranks that hold the same
   elements, one per site -- so the WAN carries each element once per site
   boundary instead of every rank's whole buffer. Sites of different sizes
   shard differently; the chunk is cut at every site's shard boundaries and
   each piece is allreduced among its holders;
3. allgather inside each site (ring).

Cost with ``a`` ranks per site and ``s`` sites (FACTS.md):
``2(a-1)aL + 2((a-1)/a)n bL + 2(s-1)aW + 2((s-1)/s)(n/a) bW``; see
:func:`testbed.collectives.model.hierarchical_allreduce_us`.
"""

from __future__ import annotations

import bisect
from typing import Dict, List, Optional, Sequence, Set

from testbed.collectives.algorithms._common import chunk_count, chunks
from testbed.collectives.algorithms.ring import ring_allgather, ring_allreduce, ring_reduce_scatter
from testbed.collectives.schedule import Region, Schedule, ScheduleBuilder, split_range
from testbed.errors import InputError

__all__ = ["OPS", "build", "check_groups"]

OPS = ("allreduce",)


def check_groups(groups: Optional[Sequence[Sequence[int]]], ranks: int,
                 field: str = "groups") -> List[List[int]]:
    """``groups`` as lists if they partition 0..ranks-1 into non-empty sites."""
    if groups is None:
        return [list(range(ranks))]
    try:
        out = [[int(r) for r in group] for group in groups]
    except (TypeError, ValueError) as exc:
        raise InputError(field, f"must be a list of rank lists, got {groups!r}") from exc
    if any(not group for group in out):
        raise InputError(field, "every site needs at least one rank")
    flat = sorted(r for group in out for r in group)
    if flat != list(range(ranks)):
        raise InputError(field, f"must list every rank 0..{ranks - 1} exactly once, got {out}")
    return out


def build(op: str, ranks: int, count: int, root: int = 0,
          groups: Optional[Sequence[Sequence[int]]] = None, chunk_bytes: Optional[int] = None,
          nchunks: Optional[int] = None) -> Schedule:
    """The hierarchical allreduce schedule (see the module docstring)."""
    sites = check_groups(groups, ranks)
    b = ScheduleBuilder()
    widest = max(len(site) for site in sites)
    k = chunk_count(count, widest, chunk_bytes, nchunks)
    for chunk in chunks((0, count), k):
        shards = [split_range(chunk[0], chunk[1], len(site)) for site in sites]
        after_rs: Dict[int, tuple] = {}
        for site, owned in zip(sites, shards):
            after_rs.update(ring_reduce_scatter(b, site, owned))
        after_cross: Dict[int, List[int]] = {r: list(after_rs.get(r, ())) for r in range(ranks)}
        if len(sites) > 1:
            for piece in _pieces(chunk, shards):
                holders = [site[_holder(owned, piece)] for site, owned in zip(sites, shards)]
                done = ring_allreduce(b, holders, piece, after_rs)
                for rank, deps in done.items():
                    after_cross[rank].extend(deps)
        for site, owned in zip(sites, shards):
            ring_allgather(b, site, owned, {r: tuple(after_cross[r]) for r in site})
    params = {"groups": sites, "chunk_bytes": chunk_bytes, "nchunks": nchunks}
    return b.build(op, "hierarchical", ranks, count, root, params)


def _pieces(chunk: Region, shards: List[List[Region]]) -> List[Region]:
    """``chunk`` cut at every site's shard boundaries (non-empty pieces)."""
    cuts: Set[int] = {chunk[0], chunk[1]}
    for owned in shards:
        cuts.update(start for start, _ in owned)
    points = sorted(cuts)
    return [(a, z) for a, z in zip(points, points[1:]) if z > a]


def _holder(owned: List[Region], piece: Region) -> int:
    """Index of the shard containing ``piece`` (shards are sorted and contiguous)."""
    starts = [start for start, stop in owned]
    index = bisect.bisect_right(starts, piece[0]) - 1
    # empty shards share their start with the next one: skip to the one that holds it
    while owned[index][1] <= piece[0]:
        index += 1
    return index
