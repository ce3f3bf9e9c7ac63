"""Time a schedule in the alpha-beta model, transfer by transfer (no network).

The closed forms of :mod:`testbed.collectives.model` describe textbook
algorithms; this runs *our* schedule through the same cost model, so the two
can be compared (tests do, for hand-worked cases) and so that chunk
pipelining, uneven splits and shared links are counted exactly.

Model: a transfer of ``m`` bytes becomes ready when its deps have arrived.
It then needs a set of resources -- by default its sender's egress and its
receiver's ingress port (single-port, full duplex) -- each serving one
transfer at a time, in order of readiness. Once all are free it holds them
for ``m * beta`` and arrives ``alpha`` later (alpha is latency: it does not
occupy the ports, so pipelined chunks hide it). ``link(src, dst)`` may give
per-pair costs and extra shared resources (a site's WAN link, say). A
zero-byte transfer (a rendezvous "ready" notification,
:mod:`testbed.collectives.protocol`) holds no resource: it is one small frame
that the kernel interleaves with data packets, so it arrives alpha after it
is ready.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, List, Optional, Tuple

from testbed.collectives.ops import ITEMSIZE
from testbed.collectives.schedule import Schedule

__all__ = ["LinkCost", "simulate_time_us", "site_link"]


@dataclass(frozen=True)
class LinkCost:
    """Cost of sending from one rank to another: latency, per-byte time, shared resources."""

    alpha_us: float
    beta_us_per_byte: float
    resources: Tuple[Hashable, ...] = field(default=())


def _default_link(alpha_us: float, beta_us_per_byte: float) -> Callable[[int, int], LinkCost]:
    def link(src: int, dst: int) -> LinkCost:
        return LinkCost(alpha_us, beta_us_per_byte, (("out", src), ("in", dst)))
    return link


def site_link(site_of: Dict[int, int], local: Tuple[float, float], wan: Tuple[float, float],
              shared_wan_link: bool = True) -> Callable[[int, int], LinkCost]:
    """Costs for ranks grouped in sites: ``local`` or ``wan`` (alpha_us, beta_us_per_byte).

    With ``shared_wan_link`` every transfer from site A to site B also holds
    the one (A, B) WAN link, so concurrent crossings share its bandwidth.
    """
    def link(src: int, dst: int) -> LinkCost:
        ports = (("out", src), ("in", dst))
        a, b = site_of[src], site_of[dst]
        if a == b:
            return LinkCost(local[0], local[1], ports)
        extra = (("wan", a, b),) if shared_wan_link else ()
        return LinkCost(wan[0], wan[1], ports + extra)
    return link


def simulate_time_us(schedule: Schedule, alpha_us: float = 0.0, beta_us_per_byte: float = 0.0,
                     link: Optional[Callable[[int, int], LinkCost]] = None,
                     itemsize: int = ITEMSIZE) -> float:
    """Completion time (us) of ``schedule`` in the alpha-beta port model above."""
    cost = link or _default_link(alpha_us, beta_us_per_byte)
    transfers = schedule.transfers
    waiting = [len(t.deps) for t in transfers]
    dependents: List[List[int]] = [[] for _ in transfers]
    for t in transfers:
        for dep in t.deps:
            dependents[dep].append(t.id)
    ready_at = [0.0] * len(transfers)
    arrive = [0.0] * len(transfers)
    free: Dict[Hashable, float] = {}
    heap = [(0.0, t.id) for t in transfers if not t.deps]
    heapq.heapify(heap)
    done = 0
    while heap:
        ready, tid = heapq.heappop(heap)
        t = transfers[tid]
        c = cost(t.src, t.dst)
        if t.elems:
            start = max([ready] + [free.get(r, 0.0) for r in c.resources])
            finish = start + t.elems * itemsize * c.beta_us_per_byte
            for r in c.resources:
                free[r] = finish
        else:  # a zero-byte notification (protocol.py): one small frame, it queues behind nothing
            finish = ready
        arrive[tid] = finish + c.alpha_us
        done += 1
        for nxt in dependents[tid]:
            ready_at[nxt] = max(ready_at[nxt], arrive[tid])
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(heap, (ready_at[nxt], nxt))
    return max(arrive, default=0.0)
