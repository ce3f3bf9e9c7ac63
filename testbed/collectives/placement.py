"""Rank placement across sites: naive versus topology-aware.

A training job gets hosts in several sites. Where each rank sits in the ring
decides which inter-site links its traffic crosses:

* ``naive``: ranks in the order a scheduler hands hosts out when it fills
  sites in turn (round-robin over sites, as bursting onto whatever capacity
  appears does), ring in rank order -- every ring edge crosses sites;
* ``topology``: each site's ranks contiguous (the ring crosses each site
  boundary once), and the order of the sites chosen so the crossing edges
  use the fastest inter-site paths: of all site orders (up to 7 sites
  exhaustively, beyond that greedily), the one whose slowest crossing path is
  fastest, then the smallest total, by the alpha-beta cost of one message.

Site paths are judged from the lab's configured links
(:func:`testbed.collectives.bench.link_params`), never by probing.
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, List, Sequence, Tuple

from testbed.errors import InputError

__all__ = ["PLACEMENTS", "place", "best_site_order"]

PLACEMENTS = ("naive", "topology")
EXHAUSTIVE_SITES = 7


def _by_site(hosts: Sequence[str], site_of: Dict[str, str]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for host in hosts:
        out.setdefault(site_of[host], []).append(host)
    return out


def best_site_order(sites: Sequence[str], cost: Callable[[str, str], float]) -> List[str]:
    """The cyclic site order whose worst crossing (then total) cost is lowest."""
    sites = list(sites)
    if len(sites) <= 2:
        return sites

    def score(order: Sequence[str]) -> Tuple[float, float]:
        edges = [cost(order[i], order[(i + 1) % len(order)]) for i in range(len(order))]
        return max(edges), sum(edges)

    if len(sites) <= EXHAUSTIVE_SITES:
        first, rest = sites[0], sites[1:]  # rotations are the same ring
        return min(([first, *perm] for perm in itertools.permutations(rest)), key=score)
    order, left = [sites[0]], set(sites[1:])
    while left:  # nearest next site
        nxt = min(sorted(left), key=lambda s: cost(order[-1], s))
        order.append(nxt)
        left.remove(nxt)
    return order


def place(strategy: str, hosts: Sequence[str], site_of: Dict[str, str], gpus_per_host: int,
          cost: Callable[[str, str], float]) -> List[str]:
    """rank -> host for ``strategy``; the ring runs in rank order."""
    if strategy not in PLACEMENTS:
        raise InputError("placement", f"must be one of {', '.join(PLACEMENTS)}, not {strategy!r}")
    groups = _by_site(hosts, site_of)
    if strategy == "naive":
        ranks: List[str] = []
        slots = {site: [h for h in group for _ in range(gpus_per_host)] for site, group in groups.items()}
        for i in range(max(len(s) for s in slots.values())):
            ranks.extend(s[i] for s in slots.values() if i < len(s))
        return ranks
    order = best_site_order(list(groups), cost)
    return [h for site in order for h in groups[site] for _ in range(gpus_per_host)]
