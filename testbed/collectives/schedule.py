"""A collective as data: transfers between ranks' work buffers, with dependencies.

A :class:`Schedule` is what an algorithm produces and an executor runs (the
in-memory :mod:`~testbed.collectives.reference` executor, or the network
engine). Its contract:

* Every rank owns one work buffer of ``work_elems`` float32 elements, made by
  :meth:`Schedule.init` from the rank's input; :meth:`Schedule.result` reads
  the rank's output from it at the end (layouts: :mod:`~testbed.collectives.ops`).
* A :class:`Transfer` may be **sent** once every transfer in its ``deps`` has
  been **applied** at its ``src`` rank (deps are always transfers received by
  ``src``). The payload is ``src``'s ``work[src_slice]`` at send time. On
  arrival it is applied to ``dst``'s ``work[dst_slice]``: ``copy`` overwrites,
  ``reduce`` adds. An executor may apply one transfer in pieces, in any order,
  and interleave pieces of different transfers.
* Any number of transfers may be in flight at once.

The invariant every schedule keeps (checked by
:func:`testbed.collectives.races.find_races` and exercised by the randomized
reference executor): **two accesses to overlapping elements of one rank's
buffer are ordered by the dependencies unless both are reads (sends) or both
are reduces** (sums commute). So no send reads a region another transfer may
still be writing, no copy races a reduce, and no transfer overwrites a
region before the sends that must read the old value. The result is then the
same for every order of arrival the network can produce.

:class:`ScheduleBuilder` is what algorithms use: it drops empty transfers
(uneven splits of small counts give empty segments) and the dependencies on
them, and numbers transfers densely from 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from testbed.collectives import ops
from testbed.errors import RunError

__all__ = [
    "Transfer",
    "Schedule",
    "ScheduleBuilder",
    "ScheduleError",
    "Region",
    "split_range",
    "COPY",
    "REDUCE",
]

COPY = "copy"
REDUCE = "reduce"
_OPS = (COPY, REDUCE)

#: A half-open element range ``(start, stop)`` of a work buffer.
Region = Tuple[int, int]

# Schedules of hundreds of ranks hold ~10^5 transfers: slots keep them small.
_SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}


class ScheduleError(RunError):
    """A schedule breaks its contract (a bug in an algorithm, not user input)."""


@dataclass(frozen=True, **_SLOTS)
class Transfer:
    """One message: ``src``'s ``work[src_slice]`` applied to ``dst``'s ``work[dst_slice]``."""

    id: int
    src: int  # rank sending
    dst: int  # rank receiving
    src_slice: Region  # read at send time
    dst_slice: Region  # same length
    op: str  # "copy" (dst[slice] = data) or "reduce" (dst[slice] += data)
    deps: Tuple[int, ...] = ()  # transfers received by src that must be applied first
    local: bool = False  # set by placement: src and dst on the same host

    @property
    def elems(self) -> int:
        return self.src_slice[1] - self.src_slice[0]

    def nbytes(self, itemsize: int = ops.ITEMSIZE) -> int:
        return self.elems * itemsize


@dataclass
class Schedule:
    """The transfers of one collective on ``ranks`` ranks (see the module docstring)."""

    op: str
    algorithm: str
    ranks: int
    count: int  # nccl-tests' parameter count (elements per rank / per block)
    work_elems: int  # size of each rank's work buffer
    transfers: List[Transfer]
    root: int = 0
    params: Dict[str, Any] = field(default_factory=dict)  # the algorithm's parameters

    def init(self, rank: int, inputs: np.ndarray) -> np.ndarray:
        """Rank ``rank``'s work buffer, made from its input."""
        return ops.init_work(self.op, rank, self.ranks, self.count, self.root, inputs)

    def result(self, rank: int, work: np.ndarray) -> Optional[np.ndarray]:
        """Rank ``rank``'s output read from its final work buffer (None if it has none)."""
        return ops.extract_result(self.op, rank, self.ranks, self.count, self.root, work)

    @property
    def size_bytes(self) -> int:
        """nccl-tests' size S of this collective (float32)."""
        return ops.size_bytes(self.op, self.count, self.ranks)

    def bytes_sent(self, itemsize: int = ops.ITEMSIZE) -> int:
        """Total payload bytes over all transfers."""
        return sum(t.elems for t in self.transfers) * itemsize

    def bytes_by_pair(self, itemsize: int = ops.ITEMSIZE) -> Dict[Tuple[int, int], int]:
        """Payload bytes per (src, dst) rank pair."""
        out: Dict[Tuple[int, int], int] = {}
        for t in self.transfers:
            out[(t.src, t.dst)] = out.get((t.src, t.dst), 0) + t.elems * itemsize
        return out

    def placed(self, rank_host: Sequence[Hashable]) -> "Schedule":
        """A copy whose transfers are marked ``local`` when both ranks share a host."""
        if len(rank_host) != self.ranks:
            raise ScheduleError(f"placement lists {len(rank_host)} ranks, "
                                f"schedule has {self.ranks}")
        transfers = [replace(t, local=rank_host[t.src] == rank_host[t.dst]) for t in self.transfers]
        return replace(self, transfers=transfers)

    def validate(self) -> None:
        """Check the structure: ids, ranks, slices, deps received by src, no cycle.

        Raises :class:`ScheduleError` with the first problem found. Races are
        checked separately (:func:`testbed.collectives.races.find_races`).
        """
        by_id: Dict[int, Transfer] = {}
        for index, t in enumerate(self.transfers):
            if t.id != index:
                raise ScheduleError(f"transfer at index {index} has id {t.id}")
            by_id[t.id] = t
        for t in self.transfers:
            for rank in (t.src, t.dst):
                if not 0 <= rank < self.ranks:
                    raise ScheduleError(f"transfer {t.id}: rank {rank} outside 0..{self.ranks - 1}")
            if t.src == t.dst:
                raise ScheduleError(f"transfer {t.id}: sends to itself")
            if t.op not in _OPS:
                raise ScheduleError(f"transfer {t.id}: unknown op {t.op!r}")
            for name, (start, stop) in (("src_slice", t.src_slice), ("dst_slice", t.dst_slice)):
                if not 0 <= start <= stop <= self.work_elems:
                    raise ScheduleError(f"transfer {t.id}: {name} {(start, stop)} outside "
                                        f"the {self.work_elems}-element buffer")
            if t.src_slice[1] - t.src_slice[0] != t.dst_slice[1] - t.dst_slice[0]:
                raise ScheduleError(f"transfer {t.id}: slices of different lengths")
            for dep in t.deps:
                other = by_id.get(dep)
                if other is None:
                    raise ScheduleError(f"transfer {t.id}: unknown dependency {dep}")
                if other.dst != t.src:
                    raise ScheduleError(f"transfer {t.id}: dependency {dep} is received by "
                                        f"rank {other.dst}, not by the sender {t.src}")
        topological_order(self.transfers)


def ready_order(transfers: List[Transfer]) -> List[int]:
    """Transfer ids in an order where deps come first, as far as that goes: on a
    dependency cycle the transfers that can never be sent are missing."""
    waiting = {t.id: len(t.deps) for t in transfers}
    dependents: Dict[int, List[int]] = {t.id: [] for t in transfers}
    for t in transfers:
        for dep in t.deps:
            dependents[dep].append(t.id)
    order = [tid for tid, n in waiting.items() if n == 0]
    for tid in order:  # grows while iterating
        for nxt in dependents[tid]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                order.append(nxt)
    return order


def topological_order(transfers: List[Transfer]) -> List[int]:
    """Transfer ids in an order where deps come first; ScheduleError on a cycle."""
    order = ready_order(transfers)
    if len(order) != len(transfers):
        stuck = sorted({t.id for t in transfers} - set(order))[:5]
        raise ScheduleError(f"dependency cycle: transfers {stuck} can never be sent")
    return order


def split_range(start: int, stop: int, parts: int) -> List[Region]:
    """``parts`` contiguous ranges covering [start, stop); the first ones one longer.

    Like ``numpy.array_split``: sizes differ by at most one, some may be empty.
    """
    if parts < 1:
        raise ScheduleError(f"cannot split into {parts} parts")
    length = max(0, stop - start)
    base, extra = divmod(length, parts)
    out = []
    pos = start
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        out.append((pos, pos + size))
        pos += size
    return out


class ScheduleBuilder:
    """Collects transfers for an algorithm; empty ones are dropped on :meth:`add`."""

    def __init__(self) -> None:
        self.transfers: List[Transfer] = []

    def add(self, src: int, dst: int, region: Region, op: str,
            deps: Iterable[Optional[int]] = (),
            dst_region: Optional[Region] = None) -> Optional[int]:
        """Add a transfer and return its id; None (nothing added) if the region is empty.

        ``dst_region`` defaults to ``region`` (same offsets in both buffers).
        ``None`` entries in ``deps`` (dropped empty transfers) are ignored.
        """
        start, stop = region
        if stop <= start:
            return None
        target = region if dst_region is None else dst_region
        if target[1] - target[0] != stop - start:
            raise ScheduleError(f"{src}->{dst}: slices {region} and {target} differ in length")
        tid = len(self.transfers)
        clean = tuple(sorted({d for d in deps if d is not None}))
        self.transfers.append(Transfer(tid, src, dst, (start, stop), tuple(target), op, clean))
        return tid

    def build(self, op: str, algorithm: str, ranks: int, count: int, root: int = 0,
              params: Optional[Dict[str, Any]] = None) -> Schedule:
        return Schedule(op=op, algorithm=algorithm, ranks=ranks, count=count,
                        work_elems=ops.work_elems(op, ranks, count),
                        transfers=self.transfers, root=root, params=dict(params or {}))
