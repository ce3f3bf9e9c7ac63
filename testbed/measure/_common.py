"""Helpers every measurement runner shares: tool checks, option checks, processes.

Private to :mod:`testbed.measure`. Nothing here sends traffic; the runners do.
"""

from __future__ import annotations

import math
import os
import select
import shutil
import subprocess
from typing import Optional, Tuple

from testbed.errors import EnvironmentProblem, InputError, ToolError
from testbed.lab.node import Node
from testbed.readiness import STALL_S, Patience

__all__ = [
    "require_tool",
    "target_ip",
    "positive_number",
    "positive_int",
    "optional_positive_int",
    "wait_for_line",
    "stop_process",
]


def require_tool(tool: str, hint: str) -> str:
    """Absolute path of ``tool``; EnvironmentProblem with ``hint`` if absent.

    Namespaces made with ``ip netns`` share the mount namespace, so a tool on
    the root namespace's PATH is also the one ``ip netns exec`` runs.
    """
    path = shutil.which(tool)
    if path is None:
        raise EnvironmentProblem(f"{tool} is not installed or not on PATH", hint)
    return path


def target_ip(node: Node, role: str = "dst") -> str:
    """The node's address, or InputError naming the node when it has none."""
    if not node.ip:
        raise InputError(f"{role}.ip", f"node {node.name} has no address to measure")
    return node.ip


def positive_number(field: str, value: float) -> float:
    """``value`` as a float if finite and > 0, else InputError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(field, f"must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InputError(field, f"must be greater than 0, got {value!r}")
    return float(value)


def positive_int(field: str, value: int, maximum: Optional[int] = None) -> int:
    """``value`` if it is an int >= 1 (and <= ``maximum``), else InputError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, f"must be a whole number, got {value!r}")
    if value < 1:
        raise InputError(field, f"must be at least 1, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(field, f"must be at most {maximum}, got {value}")
    return value


def optional_positive_int(field: str, value: Optional[int]) -> Optional[int]:
    """Like :func:`positive_int` but ``None`` passes through."""
    return None if value is None else positive_int(field, value)


def wait_for_line(proc: subprocess.Popen, what: str, stall_s: float = STALL_S) -> Tuple[str, bytes]:
    """Read the first stdout line of ``proc`` (opened in binary mode).

    No fixed deadline: the wait goes on while ``proc`` makes progress
    (:class:`testbed.readiness.Patience`). Returns the line (decoded,
    stripped) and any bytes read past it. Raises ToolError naming ``what`` if
    the process exits first or is stuck; the process is left running for the
    caller to stop.
    """
    if proc.stdout is None:
        raise ToolError(f"{what}: stdout is not a pipe")
    fd = proc.stdout.fileno()
    buffer = b""
    patience = Patience(what, proc.pid, stall_s=stall_s)
    while b"\n" not in buffer:
        patience.check()
        readable, _, _ = select.select([fd], [], [], 0.1)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            proc.wait(timeout=stall_s)
            stderr = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            tail = stderr.splitlines()[-1] if stderr else "no message"
            raise ToolError(f"{what}: exited {proc.returncode} before it was ready: {tail}")
        buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    return line.decode(errors="replace").strip(), rest


def stop_process(proc: subprocess.Popen, grace_s: float = 2.0) -> None:
    """Terminate ``proc`` by its pid if still running, then kill; always reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
