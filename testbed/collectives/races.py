"""Static check of a schedule's ordering invariant (happens-before analysis).

Each transfer ``t`` has two events: ``send(t)`` (reads ``src``'s region) and
``apply(t)`` (writes ``dst``'s region, possibly in pieces). The schedule
orders them: ``send(t)`` before ``apply(t)``, and ``apply(d)`` before
``send(t)`` for every dep ``d``. Nothing else is guaranteed: the network may
deliver in any order.

:func:`find_races` reports every pair of accesses to overlapping elements of
one rank's buffer that this order leaves unordered, unless both are reads or
both are reduces (sums commute). A schedule without races gives the same
result under every execution the contract allows, which is what the
randomized reference executor samples and what this proves for one schedule.
Cost: one bitset per transfer, fine for the few thousand transfers of tests.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from testbed.collectives.schedule import REDUCE, Schedule, topological_order

__all__ = ["find_races"]

READ, ADD, WRITE = "read", "reduce", "copy"


def find_races(schedule: Schedule, limit: int = 10) -> List[str]:
    """Up to ``limit`` descriptions of unordered conflicting accesses (empty: none)."""
    transfers = schedule.transfers
    before_send: Dict[int, int] = {}  # bitset of events that happen before send(t)
    for tid in topological_order(transfers):
        mask = 0
        for dep in transfers[tid].deps:
            mask |= before_send[dep] | (1 << (2 * dep)) | (1 << (2 * dep + 1))
        before_send[tid] = mask

    def before(event: int) -> int:
        tid, is_apply = divmod(event, 2)
        return before_send[tid] | ((1 << (2 * tid)) if is_apply else 0)

    accesses: Dict[int, List[Tuple[int, int, str, int]]] = {}
    for t in transfers:
        if t.elems == 0:
            continue
        accesses.setdefault(t.src, []).append((t.src_slice[0], t.src_slice[1], READ, 2 * t.id))
        kind = ADD if t.op == REDUCE else WRITE
        accesses.setdefault(t.dst, []).append((t.dst_slice[0], t.dst_slice[1], kind, 2 * t.id + 1))

    races: List[str] = []
    for rank, items in sorted(accesses.items()):
        items.sort()
        active: List[Tuple[int, int, str, int]] = []
        for item in items:
            start = item[0]
            active = [a for a in active if a[1] > start]
            for other in active:
                if _commute(item[2], other[2]):
                    continue
                e1, e2 = item[3], other[3]
                if before(e2) >> e1 & 1 or before(e1) >> e2 & 1:
                    continue
                races.append(f"rank {rank}: {_describe(other, transfers)} and "
                             f"{_describe(item, transfers)} are unordered")
                if len(races) >= limit:
                    return races
            active.append(item)
    return races


def _commute(a: str, b: str) -> bool:
    return (a == READ and b == READ) or (a == ADD and b == ADD)


def _describe(access: Tuple[int, int, str, int], transfers) -> str:
    start, stop, kind, event = access
    t = transfers[event // 2]
    verb = "send" if kind == READ else kind
    return f"{verb} of transfer {t.id} ({t.src}->{t.dst}) on [{start}, {stop})"
