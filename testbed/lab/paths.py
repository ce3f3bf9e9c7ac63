"""Paths through a lab's plan: the one shortest-path search, link lookups, a path's profile.

Everything here reads a :class:`~testbed.lab.plan.LabPlan` (nothing touches
the kernel). :func:`bfs` is the single breadth-first search: route planning
(:mod:`testbed.lab.plan`), the fidelity checks and the collective models all
find their paths with it, so they agree on which way traffic goes.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

from testbed.errors import InputError

__all__ = ["bfs", "l3_path", "path_links", "path_profile", "links_named", "link_profile"]

FORWARD, REVERSE = "forward", "reverse"


def bfs(start: Hashable, neighbours: Callable[[Hashable], Iterable[Tuple[Hashable, object]]],
        forwards: Callable[[Hashable], bool], goal: Optional[Hashable] = None
        ) -> Dict[Hashable, Tuple[Optional[Hashable], object]]:
    """Shortest paths from ``start``: node -> (parent, what led there), in the order found.

    ``neighbours(n)`` yields ``(next node, edge)``; only ``start`` and nodes for
    which ``forwards(n)`` holds are expanded (a host does not forward). The
    search stops once ``goal`` is found.
    """
    found: Dict[Hashable, Tuple[Optional[Hashable], object]] = {start: (None, None)}
    todo = deque([start])
    while todo:
        cur = todo.popleft()
        if cur == goal:
            break
        if cur != start and not forwards(cur):
            continue
        for nxt, edge in neighbours(cur):
            if nxt not in found:
                found[nxt] = (cur, edge)
                todo.append(nxt)
    return found


def _adjacency(plan) -> Dict[str, List[Tuple[str, Tuple[object, str]]]]:
    adj: Dict[str, List[Tuple[str, Tuple[object, str]]]] = {}
    for link in plan.links:
        adj.setdefault(link.a, []).append((link.b, (link, FORWARD)))
        adj.setdefault(link.b, []).append((link.a, (link, REVERSE)))
    return adj


def _walk_back(found, goal) -> List[Tuple[Hashable, object]]:
    steps = []
    node = goal
    while node is not None:
        parent, edge = found[node]
        steps.append((node, edge))
        node = parent
    return steps[::-1]


def l3_path(plan, a: str, b: str) -> List[str]:
    """Hosts and routers from ``a`` to ``b`` on a shortest path (switches left out); [] if none."""
    roles = {name: node.role for name, node in plan.nodes.items()}
    adj = _adjacency(plan)
    found = bfs(a, lambda n: adj.get(n, ()), lambda n: roles[n] != "host", goal=b)
    if b not in found:
        return []
    return [node for node, _ in _walk_back(found, b) if roles[node] != "switch"]


def path_links(plan, l3: Sequence[str]) -> List[Tuple[object, str]]:
    """(LinkPlan, direction) pairs along ``l3`` (src, routers, dst), switches included; [] if broken."""
    roles = {name: node.role for name, node in plan.nodes.items()}
    adj = _adjacency(plan)
    out: List[Tuple[object, str]] = []
    for a, b in zip(l3, l3[1:]):
        found = bfs(a, lambda n: adj.get(n, ()), lambda n: roles[n] == "switch", goal=b)
        if b not in found:
            return []
        out.extend(edge for _, edge in _walk_back(found, b)[1:])
    return out


def link_profile(link, direction: str):
    """The :class:`~testbed.profile.LinkProfile` of ``link`` in ``direction`` (forward = a -> b)."""
    return link.spec.forward if direction == FORWARD else link.spec.reverse


def path_profile(plan, l3: Sequence[str]) -> dict:
    """What the configuration gives the path ``l3`` (forward = its first node -> its last).

    rtt_ms and owd_forward_ms (configured delays), jitter_forward_ms (root sum
    of squares), bottleneck_bps (None: unshaped), path_mtu, loss_pct (data
    direction: lost ACKs barely slow TCP), loss_reverse_pct and hops (links).
    """
    fwd, rev = [], []
    for link, direction in path_links(plan, l3):
        other = REVERSE if direction == FORWARD else FORWARD
        fwd.append((link_profile(link, direction), link.mtu))
        rev.append((link_profile(link, other), link.mtu))
    survive = survive_rev = 1.0
    for profile, _ in fwd:
        survive *= 1 - profile.loss_pct / 100.0
    for profile, _ in rev:
        survive_rev *= 1 - profile.loss_pct / 100.0
    return {
        "rtt_ms": sum(p.delay_ms for p, _ in fwd) + sum(p.delay_ms for p, _ in rev),
        "owd_forward_ms": sum(p.delay_ms for p, _ in fwd),
        "jitter_forward_ms": math.sqrt(sum(p.jitter_ms ** 2 for p, _ in fwd)),
        "bottleneck_bps": min((p.rate_bps for p, _ in fwd if p.rate_bps), default=None),
        "path_mtu": min((m for _, m in fwd), default=1500),
        "loss_pct": (1 - survive) * 100.0,
        "loss_reverse_pct": (1 - survive_rev) * 100.0,
        "hops": len(fwd),
    }


def links_named(plan, name: str) -> list:
    """Every link of the profile name ``name``; InputError listing the names when none."""
    found = [link for link in plan.links if link.name == name]
    if not found:
        names = ", ".join(sorted({link.name for link in plan.links}))
        raise InputError("link", f"no link named {name!r} (links: {names})")
    return found
