"""Run a collective schedule over real sockets between emulated GPU hosts.

One process, one asyncio loop, sockets created inside each host's namespace
(:mod:`testbed.collectives.transport`): real bytes cross the shaped links and
every reduction is a real numpy sum, so results are checked element by
element. Ranks live on hosts (``gpus_per_host`` each); a transfer between two
ranks of one host takes the local path instead of the network -- an
NVLink-like copy that costs ``local_latency_us + bytes / local_bw`` and is
applied after that time.

A transfer is sent as soon as every transfer it depends on has been applied
at its sending rank (the :class:`~testbed.collectives.schedule.Schedule`
contract); the payload is the sender's buffer region at that moment.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from testbed.collectives.transport import Transport
from testbed.errors import RunError

__all__ = ["LocalPath", "place_ranks", "CollectiveEngine", "DTYPE"]

DTYPE = np.float32
ITER_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class LocalPath:
    """The intra-host path between ranks (NVLink-like)."""

    bandwidth_bps: float = 2.4e12  # [assumption] ~300 GB/s per direction, NVLink-class
    latency_us: float = 2.0  # [assumption] a few microseconds per message

    def delay_s(self, nbytes: int) -> float:
        return self.latency_us / 1e6 + nbytes * 8 / self.bandwidth_bps


def place_ranks(hosts: Sequence[str], gpus_per_host: int) -> List[str]:
    """Rank r on host hosts[r // gpus_per_host]: block placement, as launchers do."""
    if gpus_per_host < 1:
        raise RunError("gpus_per_host must be at least 1")
    return [h for h in hosts for _ in range(gpus_per_host)]


class CollectiveEngine:
    def __init__(self, nodes: Dict[str, object], rank_host: Sequence[str], nsocks: int = 1,
                 buffsize_bytes: int = 4 * 1024 * 1024, local: Optional[LocalPath] = None,
                 cc: Optional[str] = None):
        self.nodes = nodes
        self.rank_host = list(rank_host)
        self.local = local or LocalPath()
        self.transport = Transport(nsocks=nsocks, buffsize_bytes=buffsize_bytes, cc=cc)
        self.loop = asyncio.new_event_loop()
        self._connected = set()

    @property
    def ranks(self) -> int:
        return len(self.rank_host)

    def _pairs(self, schedule) -> List[tuple]:
        pairs = set()
        for t in schedule.transfers:
            a, b = self.rank_host[t.src], self.rank_host[t.dst]
            if a != b:
                pairs.add((a, b))
        return sorted(pairs - self._connected)

    async def _connect(self, schedule) -> None:
        pairs = self._pairs(schedule)
        if pairs:
            await self.transport.connect(pairs, self.nodes)
            self._connected.update(pairs)

    async def _run_once(self, schedule, works: List[np.ndarray],
                        ready_s: Optional[Sequence[float]] = None,
                        log: Optional[List[tuple]] = None) -> float:
        """One iteration; its wall time in seconds.

        ``ready_s[r]``: rank r sends nothing before that many seconds after the
        start (its gradients are still being computed). ``log`` gets one
        ``(transfer id, src rank, dst rank, bytes, start_s, end_s)`` per transfer,
        times from the start.
        """
        transfers = {t.id: t for t in schedule.transfers}
        dependents: Dict[int, List[int]] = {tid: [] for tid in transfers}
        remaining = {tid: len(t.deps) for tid, t in transfers.items()}
        for t in schedule.transfers:
            for dep in t.deps:
                dependents[dep].append(t.id)
        expected = {tid: (t.dst_slice[1] - t.dst_slice[0]) * works[0].itemsize
                    for tid, t in transfers.items()}
        received = {tid: 0 for tid in transfers}
        left = [len(transfers)]
        done = asyncio.get_running_loop().create_future()
        errors: List[BaseException] = []
        tasks: List[asyncio.Task] = []
        loop = asyncio.get_running_loop()

        sent_at: Dict[int, float] = {}

        def apply(tid: int, offset: int, data: np.ndarray) -> None:
            t = transfers[tid]
            start = t.dst_slice[0] + offset
            view = works[t.dst][start:start + len(data)]
            if t.op == "reduce":
                view += data
            else:
                view[:] = data
            received[tid] += data.nbytes
            if received[tid] >= expected[tid]:
                if log is not None:
                    log.append((tid, t.src, t.dst, expected[tid], sent_at.get(tid, 0.0),
                                time.perf_counter() - started))
                applied(tid)

        def applied(tid: int) -> None:
            left[0] -= 1
            for nxt in dependents[tid]:
                remaining[nxt] -= 1
                if remaining[nxt] == 0:
                    start_transfer(nxt)
            if left[0] == 0 and not done.done():
                done.set_result(None)

        def deliver(tid: int, offset: int, payload: bytes) -> None:
            apply(tid, offset, np.frombuffer(payload, dtype=works[0].dtype))

        def start_transfer(tid: int) -> None:
            t = transfers[tid]
            if ready_s is not None:
                wait = ready_s[t.src] - (time.perf_counter() - started)
                if wait > 0:  # the sender is still computing
                    loop.call_later(wait, start_transfer, tid)
                    return
            if log is not None:  # only run_step's log reads it
                sent_at[tid] = time.perf_counter() - started
            data = works[t.src][t.src_slice[0]:t.src_slice[1]].copy()  # read at send time
            a, b = self.rank_host[t.src], self.rank_host[t.dst]
            if a == b:
                loop.call_later(self.local.delay_s(data.nbytes), apply, tid, 0, data)
                return
            payload = memoryview(data).cast("B")
            try:
                if self.transport.send_nowait(a, b, tid, payload, data.itemsize):
                    return  # written at once: no task for the common case
            except RunError as exc:
                fail(exc)
                return
            task = loop.create_task(self.transport.send(a, b, tid, payload, data.itemsize))
            task.add_done_callback(lambda f: not f.cancelled() and f.exception() and fail(f.exception()))
            tasks.append(task)

        def fail(exc: BaseException) -> None:
            errors.append(exc)
            if not done.done():
                done.set_result(None)  # stop waiting: the iteration cannot complete

        self.transport.deliver = deliver
        started = time.perf_counter()
        if not transfers:
            if ready_s:
                await asyncio.sleep(max(ready_s))
            return time.perf_counter() - started
        for tid, n in remaining.items():
            if n == 0:
                start_transfer(tid)
        try:
            await asyncio.wait_for(done, ITER_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RunError(f"{schedule.op}/{schedule.algorithm}: {left[0]} transfers still "
                           f"pending after {ITER_TIMEOUT_S:g} s") from None
        elapsed = time.perf_counter() - started
        await asyncio.gather(*tasks, return_exceptions=True)
        if errors:
            raise RunError(f"{schedule.op}/{schedule.algorithm}: transport failed: {errors[0]!r}")
        return elapsed

    def run(self, schedule, inputs: List[np.ndarray], warmup: int = 1, iters: int = 5) -> dict:
        """Time ``iters`` iterations after ``warmup``; outputs from the last one.

        ``cpu_s``: this process's CPU time (user and system, the kernel's
        forwarding of what it sends included) over the timed iterations.
        """
        if len(inputs) != self.ranks:
            raise RunError(f"{len(inputs)} inputs for {self.ranks} ranks")

        async def go():
            await self._connect(schedule)
            times, cpu_s = [], 0.0
            works = []
            for i in range(warmup + iters):
                works = [schedule.init(r, inputs[r]) for r in range(self.ranks)]
                cpu_before = time.process_time()
                elapsed = await self._run_once(schedule, works)
                if i >= warmup:
                    times.append(elapsed)
                    cpu_s += time.process_time() - cpu_before
            return times, cpu_s, works

        times, cpu_s, works = self.loop.run_until_complete(go())
        outputs = [schedule.result(r, works[r]) for r in range(self.ranks)]
        return {"times_s": times, "outputs": outputs, "cpu_s": cpu_s}

    def run_step(self, schedule, inputs: List[np.ndarray], ready_s: Sequence[float]) -> dict:
        """One timed iteration in which rank r starts sending at ``ready_s[r]``.

        Returns ``{"elapsed_s", "outputs", "transfers": [(id, src, dst, bytes,
        start_s, end_s)]}``.
        """
        if len(inputs) != self.ranks or len(ready_s) != self.ranks:
            raise RunError(f"{len(inputs)} inputs and {len(ready_s)} ready times for {self.ranks} ranks")
        log: List[tuple] = []

        async def go():
            await self._connect(schedule)
            works = [schedule.init(r, inputs[r]) for r in range(self.ranks)]
            elapsed = await self._run_once(schedule, works, ready_s=list(ready_s), log=log)
            return elapsed, works

        elapsed, works = self.loop.run_until_complete(go())
        return {"elapsed_s": elapsed, "outputs": [schedule.result(r, works[r]) for r in range(self.ranks)],
                "transfers": log}

    def bytes_by_pair(self) -> Dict[str, int]:
        return {f"{a}->{b}": n for (a, b), n in self.transport.bytes_sent.items()}

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.transport.close())
        finally:
            self.loop.close()
