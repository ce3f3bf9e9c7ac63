"""Waiting for a process we started to be ready, without a fixed startup deadline.

How long a server, a probe receiver or a delay line takes to start depends on
the machine: a Python interpreter that starts in 0.1 s here takes seconds in a
2-core VM without KVM, or on a machine busy with a test suite. A fixed deadline
(5 s, 15 s) that one machine meets, a slower one misses.

So a wait here has no fixed deadline. It goes on while the process shows
progress -- its CPU time grows, or it is runnable or in I/O (``R``/``D`` in
``/proc/PID/stat``: it wants to run, the machine is just slow) -- and fails
when the process has exited, made no progress for ``stall_s`` (it is stuck:
asleep, using no CPU, and still not ready), or after ``ceiling_s`` in all (a
generous bound, so a process that spins forever is still caught). The error
names what did not start and why.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Tuple, Type

from testbed.errors import RunError, ToolError
from testbed.lab.procs import stat_fields

__all__ = ["STALL_S", "CEILING_S", "Patience", "wait_until"]

#: No progress at all for this long, and not ready: the process is stuck.
STALL_S = 20.0
#: However much progress it shows, a start taking this long is a failure.
CEILING_S = 300.0
POLL_S = 0.02


def cpu_and_state(pid: int) -> Optional[Tuple[int, str]]:
    """(CPU clock ticks of ``pid`` and its reaped children, state letter), or None if gone."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    # fields[0] is the state (field 3 of stat); utime, stime, cutime, cstime are fields 14-17
    return sum(int(x) for x in fields[11:15]), fields[0]


class Patience:
    """The progress check of one wait: :meth:`check` raises once the wait should end."""

    def __init__(self, what: str, pid: Optional[int], stall_s: float = STALL_S,
                 ceiling_s: float = CEILING_S, error: Type[RunError] = ToolError):
        self.what, self.pid, self.error = what, pid, error
        self.stall_s, self.ceiling_s = stall_s, ceiling_s
        self.started = self.last_progress = time.monotonic()
        self.last_cpu: Optional[int] = None

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def check(self) -> None:
        """Raise ``error`` naming what did not start, if it is stuck or past the ceiling."""
        now = time.monotonic()
        if self.pid is not None:
            seen = cpu_and_state(self.pid)
            if seen is not None:
                cpu, state = seen
                if state in "RD" or cpu != self.last_cpu:
                    self.last_progress = now
                self.last_cpu = cpu
        if now - self.last_progress > self.stall_s:
            raise self.error(f"{self.what} did not start: no progress (no CPU time used, not "
                             f"runnable) for {self.stall_s:g} s, not ready after "
                             f"{now - self.started:.1f} s")
        if now - self.started > self.ceiling_s:
            raise self.error(f"{self.what} did not start: still not ready after "
                             f"{self.ceiling_s:g} s, although it kept running")


def wait_until(ready: Callable[[], bool], what: str, pid: Optional[int] = None,
               exited: Callable[[], Optional[str]] = lambda: None, stall_s: float = STALL_S,
               ceiling_s: float = CEILING_S, error: Type[RunError] = ToolError,
               poll_s: float = POLL_S) -> float:
    """Poll ``ready()`` until it is true; the seconds it took.

    ``exited()`` returns why the process is gone (then the wait fails at once
    with that), or None while it runs. ``pid`` is the process whose progress
    keeps the wait going (see the module docstring); without one, only
    ``stall_s`` bounds the wait.
    """
    patience = Patience(what, pid, stall_s, ceiling_s, error)
    while not ready():
        gone = exited()
        if gone is not None:
            raise error(f"{what} did not start: {gone}")
        patience.check()
        time.sleep(poll_s)
    return patience.elapsed_s()
