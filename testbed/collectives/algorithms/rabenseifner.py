"""Rabenseifner's allreduce: recursive-halving reduce-scatter, recursive-doubling allgather.

Thakur, Rabenseifner & Gropp (2005): cost ``2 lg p a + 2((p-1)/p) n b`` for a
power-of-two ``p``.

With ``m`` ranks, ``p2`` the largest power of two <= ``m`` and ``r = m - p2``
extra ranks, the standard fold: among the first ``2r`` positions of
``order``, each odd position sends its whole vector to the even one before it
(which adds it), and gets the result back at the end. The ``p2`` remaining
ranks (virtual ranks 0..p2-1) then:

* halve: at distance ``d = p2/2, ..., 1``, partners ``v`` and ``v^d`` hold the
  same range; the one with bit ``d`` clear keeps the lower half and sends the
  upper half to be added at its partner, the other the reverse. Halves of an
  odd range differ by one element, so any count works;
* double: at ``d = 1, ..., p2/2`` each sends its whole current range to its
  partner (a copy), and both then hold the union.

Each send depends on every transfer its rank has received so far (at most
``lg p + 1``), which orders it after every write into what it reads.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from testbed.collectives.algorithms._common import check_order
from testbed.collectives.schedule import COPY, REDUCE, Region, Schedule, ScheduleBuilder

__all__ = ["OPS", "build"]

OPS = ("allreduce",)


def build(op: str, ranks: int, count: int, root: int = 0,
          order: Optional[Sequence[int]] = None) -> Schedule:
    """Rabenseifner's allreduce schedule (see the module docstring)."""
    positions = check_order(order, ranks)
    b = ScheduleBuilder()
    p2 = 1 << (ranks.bit_length() - 1)
    extra = ranks - p2
    # virtual rank -> real rank: the even one of each folded pair, then the rest
    vrank = [positions[2 * v] if v < extra else positions[v + extra] for v in range(p2)]
    received: Dict[int, List[int]] = {r: [] for r in positions}

    def step(sends: List[tuple]) -> None:
        """One round: every send depends on what its rank received in earlier rounds."""
        deps = {src: tuple(received[src]) for src, _, _, _ in sends}
        for src, dst, region, op_ in sends:
            tid = b.add(src, dst, region, op_, deps[src])
            if tid is not None:
                received[dst].append(tid)

    step([(positions[2 * i + 1], positions[2 * i], (0, count), REDUCE) for i in range(extra)])

    current: List[Region] = [(0, count)] * p2
    history: List[List[Region]] = []  # ranges before each halving step
    d = p2 // 2
    while d >= 1:
        history.append(list(current))
        keep: List[Region] = []
        sends = []
        for v in range(p2):
            lo, hi = current[v]
            mid = lo + (hi - lo) // 2
            low_half, high_half = (lo, mid), (mid, hi)
            keep.append(high_half if v & d else low_half)
            sends.append((vrank[v], vrank[v ^ d], low_half if v & d else high_half, REDUCE))
        step(sends)
        current = keep
        d //= 2

    d = 1
    for before in reversed(history):
        step([(vrank[v], vrank[v ^ d], current[v], COPY) for v in range(p2)])
        current = before
        d *= 2

    step([(positions[2 * i], positions[2 * i + 1], (0, count), COPY) for i in range(extra)])
    return b.build(op, "rabenseifner", ranks, count, root, {"order": positions})
