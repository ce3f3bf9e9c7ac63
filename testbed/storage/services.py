"""The step's processes in lab namespaces: servers by pid, readers and tools with deadlines.

* :class:`Service` -- a long-running server (origin or cache). ``start``
  returns once ``ss`` in the node's namespace shows *this* pid listening on
  the port (polled with a deadline); ``stop`` ends exactly this process
  (SIGTERM, then SIGKILL) and reaps it. Its stderr goes to a temporary
  file, so a chatty process can never block on a full pipe, and its last
  line explains a failure.
* :func:`run_tool` -- a short command (``admin stats``/``publish``) to
  completion, its one JSON document decoded.
* :func:`run_parallel` -- readers in several nodes at once, every one
  waited for against one deadline and stopped by pid if still running.

Every command is an argv list run through ``ip netns exec``; nothing is
ever found or killed by name.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

from testbed.readiness import STALL_S, wait_until
from testbed.errors import ToolError
from testbed.lab.node import Node
from testbed.measure._common import stop_process

__all__ = ["Service", "run_tool", "run_parallel", "decode_json_line"]

POLL_S = 0.02


def _tail(fh) -> str:
    fh.seek(0)
    lines = fh.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def decode_json_line(text: str, what: str) -> dict:
    """The JSON object on the last non-empty line of ``text``; ToolError if there is none."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ToolError(f"{what}: printed nothing")
    try:
        doc = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ToolError(f"{what}: output is not JSON ({exc}): {lines[-1][:120]}") from exc
    if not isinstance(doc, dict):
        raise ToolError(f"{what}: output is not a JSON object")
    return doc


class Service:
    """One server process in ``node`` listening on ``port``; a context manager."""

    def __init__(self, node: Node, argv: Sequence[str], port: int, what: str):
        self.node = node
        self.argv = list(argv)
        self.port = port
        self.what = what
        self.proc: Optional[subprocess.Popen] = None
        self._stderr = None

    @property
    def pid(self) -> Optional[int]:
        return None if self.proc is None else self.proc.pid

    def _listening(self) -> bool:
        out = self.node.run(["ss", "-Hltnp", f"sport = :{self.port}"], timeout_s=5.0).stdout
        return f"pid={self.proc.pid}," in out

    def start(self, stall_s: float = STALL_S) -> "Service":
        """Start the process and return once its own pid listens; ToolError if it does not.

        No fixed deadline: the origin generates and hashes its whole dataset
        first, which takes what this machine takes; the wait lasts while the
        process makes progress (:func:`testbed.readiness.wait_until`).
        """
        self._stderr = tempfile.TemporaryFile(prefix="testbed-storage-")
        self.proc = self.node.popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=self._stderr)
        def exited():
            if self.proc.poll() is None:
                return None
            return f"exited {self.proc.returncode} before listening on port {self.port}: " \
                   f"{_tail(self._stderr)}"

        try:
            wait_until(self._listening, f"{self.what} on {self.node.name} (port {self.port})",
                       pid=self.proc.pid, exited=exited, stall_s=stall_s, poll_s=POLL_S)
        except BaseException:
            self.stop()
            raise
        return self

    def check_alive(self) -> None:
        """ToolError if the process has exited (it should serve until stopped)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ToolError(f"{self.what} on {self.node.name} exited {self.proc.returncode} "
                            f"while in use: {_tail(self._stderr)}")

    def stop(self) -> None:
        """End exactly this process (by pid) and reap it; safe to call twice."""
        try:
            if self.proc is not None:
                stop_process(self.proc)
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_tool(node: Node, argv: Sequence[str], timeout_s: float, what: str) -> dict:
    """Run ``argv`` in ``node`` to completion (checked exit code) and decode its JSON line."""
    proc = node.run(list(argv), timeout_s=timeout_s)
    return decode_json_line(proc.stdout, f"{what} on {node.name}")


def run_parallel(jobs: Sequence[Tuple[str, Node, Sequence[str]]], timeout_s: float) -> List[dict]:
    """Run every ``(label, node, argv)`` at once; their JSON documents, in order.

    One deadline for all; a job still running at the deadline, or one that
    exits non-zero or prints no JSON, is a ToolError naming it. Every
    process is stopped by pid and reaped before this returns or raises.
    """
    started: List[Tuple[str, Node, subprocess.Popen, object, object]] = []
    try:
        for label, node, argv in jobs:
            out = tempfile.TemporaryFile(prefix="testbed-storage-")
            err = tempfile.TemporaryFile(prefix="testbed-storage-")
            try:
                proc = node.popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            except BaseException:
                out.close()
                err.close()
                raise
            started.append((label, node, proc, out, err))
        deadline = time.monotonic() + timeout_s
        for label, node, proc, _out, _err in started:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise ToolError(f"{label} on {node.name} did not finish within {timeout_s:g} s") from exc
        docs = []
        for label, node, proc, out, err in started:
            if proc.returncode != 0:
                raise ToolError(f"{label} on {node.name} exited {proc.returncode}: {_tail(err)}")
            out.seek(0)
            docs.append(decode_json_line(out.read().decode(errors="replace"), f"{label} on {node.name}"))
        return docs
    finally:
        for _label, _node, proc, out, err in started:
            try:
                stop_process(proc)
            finally:
                out.close()
                err.close()
