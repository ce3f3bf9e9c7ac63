"""Ring orders over sites: topology-aware, naive, interleaved; and their site crossings.

A site is a group of ranks (one cloud or datacenter). A ring edge *crosses*
when its two ranks are in different sites; every crossing edge is a
connection over the inter-site link, and when several cross in the same
direction they share it.

* :func:`topology_aware_order` with ``style="cycle"`` (default) visits each
  site's ranks contiguously, sites one after the other: a ring over ``s >= 2``
  sites crosses exactly ``s`` times (each site boundary once, including the
  wrap-around), 0 times for one site.
* ``style="line"`` goes out through the first half of each site and comes
  back through the second halves, as NCCL's cross-datacenter rings do ("only
  2(nDC-1) connections cross between datacenters", FACTS.md): ``2(s-1)``
  crossings when every middle site has at least two ranks, and only
  neighbouring sites are ever connected (a chain of datacenters needs no
  link from the last back to the first).
  For two sites both give 2 crossings, one in each direction; for ``s > 2``
  the cycle crosses fewer times (``s < 2(s-1)``) but needs a link between the
  last site and the first.
* :func:`naive_order` is rank-id order: its crossings depend on placement
  (with block placement of contiguous hosts per site it is already
  contiguous); :func:`interleaved_order` is the worst case, every edge
  crossing, for comparisons.
"""

from __future__ import annotations

from typing import Dict, Hashable, List, Sequence, Tuple

from testbed.errors import InputError

__all__ = [
    "naive_order",
    "topology_aware_order",
    "interleaved_order",
    "groups_from_labels",
    "site_of",
    "ring_crossings",
    "crossings_by_direction",
]

STYLES = ("cycle", "line")


def naive_order(n: int) -> List[int]:
    """Ranks in id order 0..n-1."""
    return list(range(n))


def _check(groups: Sequence[Sequence[int]]) -> List[List[int]]:
    out = [list(g) for g in groups]
    flat = [r for g in out for r in g]
    if not out or any(not g for g in out) or sorted(flat) != list(range(len(flat))):
        raise InputError("groups", f"must partition ranks 0..n-1 into non-empty sites, got {out}")
    return out


def topology_aware_order(groups: Sequence[Sequence[int]], style: str = "cycle") -> List[int]:
    """A ring order crossing sites as few times as the style allows (module docstring)."""
    sites = _check(groups)
    if style == "cycle":
        return [r for g in sites for r in g]
    if style != "line":
        raise InputError("style", f"must be one of {', '.join(STYLES)}, got {style!r}")
    out: List[int] = []
    backs: List[List[int]] = []
    for index, g in enumerate(sites):
        if index == len(sites) - 1:
            out.extend(g)
        else:
            half = (len(g) + 1) // 2
            out.extend(g[:half])
            backs.append(g[half:])
    for back in reversed(backs):
        out.extend(back)
    return out


def interleaved_order(groups: Sequence[Sequence[int]]) -> List[int]:
    """Round-robin over sites (one rank of each in turn): the worst ring for WAN crossings."""
    sites = _check(groups)
    out: List[int] = []
    for i in range(max(len(g) for g in sites)):
        out.extend(g[i] for g in sites if i < len(g))
    return out


def groups_from_labels(labels: Sequence[Hashable]) -> List[List[int]]:
    """Sites from a per-rank label (e.g. each rank's site name), in order of first appearance."""
    groups: Dict[Hashable, List[int]] = {}
    for rank, label in enumerate(labels):
        groups.setdefault(label, []).append(rank)
    return list(groups.values())


def site_of(groups: Sequence[Sequence[int]]) -> Dict[int, int]:
    """Rank -> index of its site."""
    return {r: i for i, g in enumerate(groups) for r in g}


def crossings_by_direction(order: Sequence[int],
                           groups: Sequence[Sequence[int]]) -> Dict[Tuple[int, int], int]:
    """Ring edges per (from site, to site) pair, for edges that cross sites."""
    where = site_of(_check(groups))
    out: Dict[Tuple[int, int], int] = {}
    n = len(order)
    if n < 2:
        return out
    for p in range(n):
        a, b = where[order[p]], where[order[(p + 1) % n]]
        if a != b:
            out[(a, b)] = out.get((a, b), 0) + 1
    return out


def ring_crossings(order: Sequence[int], groups: Sequence[Sequence[int]]) -> int:
    """How many ring edges (including the wrap-around) join ranks of different sites."""
    return sum(crossings_by_direction(order, groups).values())
