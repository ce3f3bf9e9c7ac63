"""Processes a lab starts: recorded by pid and start time, ended by pid only.

A pid alone can be reused by the kernel; (pid, start time in clock ticks from
/proc/<pid>/stat) names one process for good. Nothing here ever looks a
process up by name or pattern.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence

__all__ = ["ProcRecord", "start_time", "is_alive", "spawn", "stop"]


@dataclass
class ProcRecord:
    pid: int
    start: int  # /proc/<pid>/stat field 22
    netns: str
    kind: str  # "delayline", "iperf3", ...
    log: Optional[str] = None
    stats: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


def stat_fields(pid: int) -> Optional[List[str]]:
    """``/proc/<pid>/stat`` from field 3 (the state) on, or None if the process is gone.

    The command name may contain spaces and parentheses: split after the last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def start_time(pid: int) -> Optional[int]:
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def is_alive(pid: int, start: int) -> bool:
    """True if the very process (pid, start) still exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == start


def spawn(argv: Sequence[str], netns: str, kind: str, log_path: str,
          stats_path: Optional[str] = None) -> ProcRecord:
    """Start ``argv`` inside ``netns``, detached into its own session."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    start = None
    for _ in range(100):
        start = start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.001)
    return ProcRecord(pid=proc.pid, start=start or 0, netns=netns, kind=kind,
                      log=log_path, stats=stats_path)


def stop(rec: ProcRecord, timeout_s: float = 3.0) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; only this exact process."""
    if not is_alive(rec.pid, rec.start):
        _reap(rec.pid)
        return
    try:
        os.kill(rec.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(rec.pid)
        if not is_alive(rec.pid, rec.start):
            return
        time.sleep(0.01)
    if is_alive(rec.pid, rec.start):
        try:
            os.kill(rec.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_alive(rec.pid, rec.start):
        _reap(rec.pid)
        time.sleep(0.01)


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
