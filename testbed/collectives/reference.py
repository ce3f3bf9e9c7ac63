"""An in-memory executor of schedules: the oracle for correctness.

:func:`execute` runs a :class:`~testbed.collectives.schedule.Schedule` on
numpy work buffers, following the schedule contract exactly: a transfer is
sent (its source region copied) once its deps are applied at its sender, and
applied (copy or add) at its receiver later.

Without ``rng`` the run is deterministic (all ready transfers sent, then
applied, in id order). With ``rng`` every step picks at random among the
ready sends and the pending pieces, and each transfer is applied in 1 to
``max_pieces`` pieces in random order -- the interleavings a network with
several sockets per peer can produce. A correct schedule gives the right
answer under all of them; :func:`execute_random` runs several.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from testbed.collectives import ops
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.schedule import COPY, Schedule, ScheduleError

__all__ = ["execute", "execute_random", "run_collective"]


def _pieces(length: int, rng: Optional[np.random.Generator],
            max_pieces: int) -> List[Tuple[int, int]]:
    if rng is None or length <= 1 or max_pieces <= 1:
        return [(0, length)]
    parts = int(rng.integers(1, min(max_pieces, length) + 1))
    cuts = sorted(rng.choice(np.arange(1, length), size=parts - 1, replace=False).tolist())
    bounds = [0] + cuts + [length]
    pieces = list(zip(bounds, bounds[1:]))
    rng.shuffle(pieces)
    return pieces


def execute(schedule: Schedule, inputs: Sequence[np.ndarray],
            rng: Optional[np.random.Generator] = None,
            max_pieces: int = 3) -> List[Optional[np.ndarray]]:
    """Run ``schedule`` on ``inputs`` (one array per rank); each rank's output.

    Raises :class:`~testbed.collectives.schedule.ScheduleError` if transfers
    remain that can never be sent.
    """
    if len(inputs) != schedule.ranks:
        raise ScheduleError(f"{len(inputs)} inputs for {schedule.ranks} ranks")
    works = [schedule.init(r, inputs[r]) for r in range(schedule.ranks)]
    transfers = schedule.transfers
    waiting = [len(t.deps) for t in transfers]
    dependents: Dict[int, List[int]] = {t.id: [] for t in transfers}
    for t in transfers:
        for dep in t.deps:
            dependents[dep].append(t.id)
    ready = [t.id for t in transfers if not t.deps]
    # pending pieces: (transfer id, offset, payload slice)
    pending: List[Tuple[int, int, np.ndarray]] = []
    left_pieces = [0] * len(transfers)
    applied = 0

    def send(tid: int) -> None:
        t = transfers[tid]
        data = works[t.src][t.src_slice[0]:t.src_slice[1]].copy()  # read at send time
        pieces = _pieces(len(data), rng, max_pieces)
        left_pieces[tid] = len(pieces)
        for start, stop in pieces:
            pending.append((tid, start, data[start:stop]))

    def apply(tid: int, offset: int, data: np.ndarray) -> None:
        nonlocal applied
        t = transfers[tid]
        start = t.dst_slice[0] + offset
        view = works[t.dst][start:start + len(data)]
        if t.op == COPY:
            view[:] = data
        else:
            view += data
        left_pieces[tid] -= 1
        if left_pieces[tid] == 0:
            applied += 1
            for nxt in dependents[tid]:
                waiting[nxt] -= 1
                if waiting[nxt] == 0:
                    ready.append(nxt)

    while ready or pending:
        if rng is None:
            batch, ready[:] = sorted(ready), []
            for tid in batch:
                send(tid)
            batch_pending, pending[:] = list(pending), []
            for tid, offset, data in batch_pending:
                apply(tid, offset, data)
            continue
        pick = int(rng.integers(len(ready) + len(pending)))
        if pick < len(ready):
            ready[pick], ready[-1] = ready[-1], ready[pick]
            send(ready.pop())
        else:
            pick -= len(ready)
            pending[pick], pending[-1] = pending[-1], pending[pick]
            apply(*pending.pop())
    if applied != len(transfers):
        raise ScheduleError(f"{schedule.op}/{schedule.algorithm}: {len(transfers) - applied} "
                            f"transfers can never be sent (dependency cycle)")
    return [schedule.result(r, works[r]) for r in range(schedule.ranks)]


def execute_random(schedule: Schedule, inputs: Sequence[np.ndarray], runs: int = 3,
                   seed: int = 0, max_pieces: int = 3) -> List[List[Optional[np.ndarray]]]:
    """Outputs of ``runs`` randomized executions (seeds ``seed``, ``seed+1``, ...)."""
    return [execute(schedule, inputs, np.random.default_rng(seed + i), max_pieces)
            for i in range(runs)]


def run_collective(op: str, algorithm: str, ranks: int, count: int, root: int = 0,
                   seed: int = 0, **params) -> Tuple[Schedule, List[Optional[np.ndarray]], int]:
    """Build, run (one random interleaving) and check: (schedule, outputs, #wrong)."""
    schedule = build_schedule(op, algorithm, ranks, count, root, **params)
    inputs = ops.make_inputs(op, ranks, count, seed)
    outputs = execute(schedule, inputs, np.random.default_rng(seed))
    wrong = ops.count_wrong(op, outputs, ops.expected(op, inputs, root))
    return schedule, outputs, wrong
