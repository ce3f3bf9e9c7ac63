"""One-way delay, RFC 3550 jitter, loss and reordering with our own UDP probes.

The probe program is :mod:`testbed.measure.owd_probe`, started with the
running interpreter (``sys.executable -m testbed.measure.owd_probe``) inside
each node's namespace. The receiver starts first and prints ``ready``; the
runner waits for that line with a deadline, then starts the sender, and the
receiver exits by itself after the last probe plus a grace period. Every
process is tracked by pid and stopped in ``finally``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from testbed.errors import EnvironmentProblem, InputError, ToolError
from testbed.lab.node import Node
from testbed.measure._common import (
    positive_int,
    positive_number,
    stop_process,
    target_ip,
    wait_for_line,
)
from testbed.measure.owd_probe import HEADER
from testbed.readiness import CEILING_S

__all__ = ["OwdRunner"]

_PROBE_MODULE = "testbed.measure.owd_probe"
_REQUIRED_KEYS = (
    "count",
    "received",
    "loss_pct",
    "reordered",
    "duplicates",
    "one_way_delay_ms",
    "jitter_ms",
    "stdev_ms",
    "samples_ms",
    "packets",
)


def _probe_env() -> Dict[str, str]:
    """The environment with this checkout's package root first on PYTHONPATH."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


@dataclass
class _Direction:
    src: Node
    dst: Node
    receiver: subprocess.Popen
    sender: Optional[subprocess.Popen] = None
    port: int = 0
    early_stdout: bytes = b""


class OwdRunner:
    """One-way delay probes between two nodes (Flent lifecycle)."""

    name = "owd"
    tool = "python3 -m " + _PROBE_MODULE

    def check(self, node: Node) -> None:
        """The probe needs only this interpreter (run inside the namespace) and this package."""
        if not sys.executable or not os.access(sys.executable, os.X_OK):
            raise EnvironmentProblem(
                "owd: the running Python interpreter has no usable path (sys.executable)",
                "run the testbed from a regular Python installation or virtualenv",
            )

    def argv(
        self,
        role: str,
        *,
        port: int,
        count: int,
        interval_ms: float,
        dst_ip: str = "",
        size_bytes: int = 64,
        bind_ip: str = "0.0.0.0",
        grace_ms: float = 1000.0,
        start_timeout_ms: float = 5000.0,
    ) -> list:
        """Command line of the receiver (``role="recv"``) or sender (``"send"``)."""
        base = [sys.executable, "-m", _PROBE_MODULE, role, "--port", str(port),
                "--count", str(count), "--interval-ms", f"{interval_ms:g}"]
        if role == "recv":
            return base + ["--bind", bind_ip, "--grace-ms", f"{grace_ms:g}",
                           "--start-timeout-ms", f"{start_timeout_ms:g}", "--stdin-eof"]
        if role == "send":
            return base + ["--dst", dst_ip, "--size-bytes", str(size_bytes)]
        raise ValueError(f"role must be 'recv' or 'send', not {role!r}")

    def parse(self, text: str) -> dict:
        """The receiver's JSON document, checked for every documented key."""
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and lines[0].strip() == "ready":
            lines = lines[1:]
        if not lines:
            raise ToolError("owd_probe: receiver printed no result")
        try:
            doc = json.loads(lines[-1])
        except json.JSONDecodeError as exc:
            raise ToolError(f"owd_probe: receiver output is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ToolError("owd_probe: receiver result is not a JSON object")
        missing = [key for key in _REQUIRED_KEYS if key not in doc]
        if missing:
            raise ToolError(f"owd_probe: receiver result lacks {', '.join(missing)}")
        return doc

    def run(
        self,
        src: Node,
        dst: Node,
        *,
        count: int = 100,
        interval_ms: float = 10.0,
        size_bytes: int = 64,
        port: int = 5301,
        grace_ms: float = 1000.0,
    ) -> dict:
        """Send ``count`` probes from ``src`` to ``dst`` and return the receiver's result.

        Probes leave every ``interval_ms`` with a UDP payload of ``size_bytes``
        to ``dst.ip:port``. No fixed start-up deadline: the receiver is waited
        for while it makes progress (:mod:`testbed.readiness`), the sender gets
        the schedule plus a start-up allowance scaled by what the receiver's
        start took, and the receiver stops ``grace_ms`` after the last probe was
        due or after the sender finished. Adds ``sent`` and ``send_errors`` from
        the sender; ToolError if no probe arrived at all.
        """
        return self._measure([(src, dst)], count, interval_ms, size_bytes, port, grace_ms)[0]

    def run_both(
        self,
        a: Node,
        b: Node,
        *,
        count: int = 100,
        interval_ms: float = 10.0,
        size_bytes: int = 64,
        port: int = 5301,
        grace_ms: float = 1000.0,
    ) -> dict:
        """Both directions at once: ``{"forward": a->b, "reverse": b->a}``."""
        forward, reverse = self._measure([(a, b), (b, a)], count, interval_ms,
                                         size_bytes, port, grace_ms)
        return {"forward": forward, "reverse": reverse}

    def _measure(
        self,
        pairs: List[Tuple[Node, Node]],
        count: int,
        interval_ms: float,
        size_bytes: int,
        port: int,
        grace_ms: float,
    ) -> List[dict]:
        positive_int("owd.count", count)
        positive_number("owd.interval_ms", interval_ms)
        positive_int("owd.port", port, maximum=65535)
        positive_number("owd.grace_ms", grace_ms)
        if positive_int("owd.size_bytes", size_bytes) < HEADER.size:
            raise InputError("owd.size_bytes", f"must be at least {HEADER.size} "
                             f"(the probe header), got {size_bytes}")
        for src, dst in pairs:
            target_ip(dst)
            self.check(src)
        schedule_s = count * interval_ms / 1000.0
        env = _probe_env()
        directions: List[_Direction] = []
        try:
            for src, dst in pairs:
                # the receiver waits for the first probe as long as the sender may
                # take to start; once the sender is done, _collect closes its stdin
                argv = self.argv("recv", port=port, count=count, interval_ms=interval_ms,
                                 bind_ip=dst.ip, grace_ms=grace_ms,
                                 start_timeout_ms=CEILING_S * 1000.0)
                directions.append(_Direction(
                    src, dst, dst.popen(argv, text=False, env=env, stdin=subprocess.PIPE),
                    port=port))
            started = time.monotonic()
            for d in directions:
                what = f"owd receiver on {d.dst.name}"
                line, d.early_stdout = wait_for_line(d.receiver, what)
                if line != "ready":
                    raise ToolError(f"{what}: expected 'ready', got {line!r}")
            # what starting this interpreter and script costs on this machine now
            start_s = time.monotonic() - started
            for d in directions:
                argv = self.argv("send", port=port, count=count, interval_ms=interval_ms,
                                 dst_ip=d.dst.ip, size_bytes=size_bytes)
                d.sender = d.src.popen(argv, text=False, env=env)
            return [self._collect(d, count, schedule_s, grace_ms, start_s) for d in directions]
        finally:
            for d in directions:
                for proc in (d.sender, d.receiver):
                    if proc is not None:
                        stop_process(proc)

    def _collect(self, d: _Direction, count: int, schedule_s: float, grace_ms: float,
                 start_s: float) -> dict:
        label = f"owd {d.src.name} -> {d.dst.name}"
        # the sender starts like the receivers did: allow several times that
        limit_s = schedule_s + 10.0 + 4.0 * start_s
        try:
            send_out, send_err = d.sender.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired as exc:
            raise ToolError(f"{label}: sender did not finish within {limit_s:g} s") from exc
        if d.sender.returncode != 0:
            tail = send_err.decode(errors="replace").strip().splitlines()
            raise ToolError(f"{label}: sender on {d.src.name} exited "
                            f"{d.sender.returncode}: {tail[-1] if tail else 'no message'}")
        limit_s = grace_ms / 1000.0 + 10.0
        try:
            recv_out, recv_err = d.receiver.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired as exc:
            raise ToolError(f"{label}: receiver did not exit within {limit_s:g} s "
                            "after the last probe") from exc
        if d.receiver.returncode != 0:
            tail = recv_err.decode(errors="replace").strip().splitlines()
            raise ToolError(f"{label}: receiver on {d.dst.name} exited "
                            f"{d.receiver.returncode}: {tail[-1] if tail else 'no message'}")
        try:
            result = self.parse((d.early_stdout + recv_out).decode(errors="replace"))
            sender = json.loads(send_out.decode(errors="replace").strip().splitlines()[-1])
        except (ToolError, json.JSONDecodeError, IndexError) as exc:
            raise ToolError(f"{label}: {exc}") from exc
        result["sent"] = sender.get("sent")
        result["send_errors"] = sender.get("send_errors")
        if result["received"] == 0:
            errors = f" ({result['send_errors']} send errors)" if result["send_errors"] else ""
            raise ToolError(f"{label}: none of {count} probes arrived at {d.dst.ip}:{d.port} "
                            f"within the schedule plus {grace_ms:g} ms{errors}")
        return result
