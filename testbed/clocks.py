"""Clocks shared by the probes and the delay line.

The kernel stamps packets (``SO_TIMESTAMPNS`` on a socket, ``NFQA_TIMESTAMP``
on a queued packet) with the real-time clock; the testbed times on the
monotonic clock, which network namespaces share. :class:`ClockOffset` moves a
stamp from one to the other with an offset read so that a preempted reader
cannot skew it.
"""

from __future__ import annotations

import socket
import time
from typing import Callable, Tuple

__all__ = ["SO_TIMESTAMPNS", "ClockOffset"]

#: SO_TIMESTAMPNS (= its SCM_ type) from asm-generic/socket.h; Python's socket lacks it
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CLOCK = time.CLOCK_MONOTONIC


class ClockOffset:
    """The real-time minus monotonic clock offset, from bracketed readings.

    One reading is monotonic, real-time, monotonic; its offset is the real-time
    reading less the middle of the bracket, wrong by at most half the bracket's
    width. ``read()`` takes a reading and adopts it when its bracket is no wider
    than ``max(2 * the tightest seen, tight_ns)``; otherwise (the reader was
    preempted between two reads) it keeps the last adopted offset. The first
    estimate is the tightest of ``calibrate_reads`` readings. ``clock`` (kind ->
    ns) is for tests.
    """

    def __init__(self, calibrate_reads: int = 32, tight_ns: int = 5_000,
                 clock: Callable[[int], int] = time.clock_gettime_ns) -> None:
        self._clock = clock
        self._tight_ns = tight_ns
        self._best_ns, self.offset_ns = min(self._bracket() for _ in range(max(1, calibrate_reads)))

    def _bracket(self) -> Tuple[int, int]:
        before = self._clock(_CLOCK)
        real = self._clock(time.CLOCK_REALTIME)
        after = self._clock(_CLOCK)
        return after - before, real - (before + after) // 2

    def read(self) -> int:
        """The offset now (ns), refreshed when this reading's bracket is tight."""
        width, offset = self._bracket()
        if width <= max(2 * self._best_ns, self._tight_ns):
            self.offset_ns = offset
            self._best_ns = min(self._best_ns, width)
        return self.offset_ns

