"""Round-trip time and loss with iputils ``ping``.

``ping -n -c COUNT -i INTERVAL -W TIMEOUT [-s SIZE] DST`` runs in the source
node. The parser reads every reply line (``time=0.058 ms``), every ICMP error
line (``From 10.0.0.1 icmp_seq=1 Destination Host Unreachable``), ping's own
local errors (``ping: local error: message too long, mtu=1400``) and the
statistics line. :func:`parse_ping_output` is shared with :mod:`.path`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional

from testbed.errors import ToolError
from testbed.lab.node import Node
from testbed.measure._common import (
    optional_positive_int,
    positive_int,
    positive_number,
    require_tool,
    target_ip,
)
from testbed.measure.stats import summarize

__all__ = [
    "PingReply",
    "PingError",
    "PingOutput",
    "parse_ping_output",
    "ping_argv",
    "PingRunner",
]

_REPLY = re.compile(
    r"^(?P<bytes>\d+) bytes from (?P<addr>[^\s:]+): icmp_seq=(?P<seq>\d+)"
    r" ttl=(?P<ttl>\d+) time=(?P<time>[\d.]+) ms(?P<dup> \(DUP!\))?"
)
_ICMP_ERROR = re.compile(
    r"^From (?P<addr>\S+?)(?: \([^)]*\))?:? icmp_seq=(?P<seq>\d+) (?P<message>.+)$"
)
_LOCAL_ERROR = re.compile(r"^ping: local error: (?P<message>.+)$")
_MTU = re.compile(r"mtu ?= ?(\d+)")
_STATS = re.compile(
    r"^(?P<sent>\d+) packets transmitted, (?P<received>\d+) received"
    r"(?:, \+(?P<duplicates>\d+) duplicates)?"
    r"(?:, \+(?P<corrupted>\d+) corrupted)?"
    r"(?:, \+(?P<errors>\d+) errors)?"
    r"(?:, (?P<loss>[\d.]+)% packet loss)?"
)


@dataclass(frozen=True)
class PingReply:
    """One echo reply line."""

    seq: int
    ttl: int
    rtt_ms: float
    from_addr: str
    duplicate: bool


@dataclass(frozen=True)
class PingError:
    """An ICMP error (``From ADDR ...``) or a local error (``from_addr`` None)."""

    seq: Optional[int]
    from_addr: Optional[str]
    message: str
    mtu: Optional[int]  # set for "Frag needed ... (mtu = N)" and "message too long, mtu=N"


@dataclass
class PingOutput:
    """Everything one ping run printed that we use."""

    replies: List[PingReply] = field(default_factory=list)
    errors: List[PingError] = field(default_factory=list)
    sent: Optional[int] = None  # None: no statistics line (ping failed early)
    received: int = 0
    duplicates: int = 0
    error_count: int = 0
    loss_pct: Optional[float] = None
    diagnostics: List[str] = field(default_factory=list)  # other "ping: ..." lines


def _mtu_in(message: str) -> Optional[int]:
    match = _MTU.search(message)
    return int(match.group(1)) if match else None


def parse_ping_output(text: str) -> PingOutput:
    """Parse ping's stdout (and stderr, appended) line by line; never raises."""
    out = PingOutput()
    for raw in text.splitlines():
        line = raw.strip()
        match = _REPLY.match(line)
        if match:
            out.replies.append(
                PingReply(
                    seq=int(match["seq"]),
                    ttl=int(match["ttl"]),
                    rtt_ms=float(match["time"]),
                    from_addr=match["addr"],
                    duplicate=match["dup"] is not None,
                )
            )
            continue
        match = _ICMP_ERROR.match(line)
        if match:
            message = match["message"].strip()
            out.errors.append(
                PingError(int(match["seq"]), match["addr"], message, _mtu_in(message))
            )
            continue
        match = _LOCAL_ERROR.match(line)
        if match:
            message = match["message"].strip()
            out.errors.append(PingError(None, None, message, _mtu_in(message)))
            continue
        match = _STATS.match(line)
        if match:
            out.sent = int(match["sent"])
            out.received = int(match["received"])
            out.duplicates = int(match["duplicates"] or 0)
            out.error_count = int(match["errors"] or 0)
            if match["loss"] is not None:
                out.loss_pct = float(match["loss"])
            continue
        if line.startswith("ping:"):
            out.diagnostics.append(line)
    return out


def ping_argv(
    dst_ip: str,
    *,
    count: int = 1,
    interval_s: Optional[float] = None,
    timeout_s: float = 1.0,
    size_bytes: Optional[int] = None,
    ttl: Optional[int] = None,
    dont_fragment: bool = False,
) -> list:
    """The ping command line; ``size_bytes`` is the ICMP payload (ping -s)."""
    argv = ["ping", "-n", "-c", str(count)]
    if interval_s is not None:
        argv += ["-i", f"{interval_s:g}"]
    argv += ["-W", f"{timeout_s:g}"]
    if size_bytes is not None:
        argv += ["-s", str(size_bytes)]
    if ttl is not None:
        argv += ["-t", str(ttl)]
    if dont_fragment:
        argv += ["-M", "do"]
    argv.append(dst_ip)
    return argv


class PingRunner:
    """RTT samples and loss between two nodes (Flent lifecycle)."""

    name = "ping"
    tool = "ping"

    def check(self, node: Node) -> None:
        """Fail early when ping is missing."""
        require_tool("ping", "apt-get install iputils-ping")

    def argv(
        self,
        dst_ip: str,
        *,
        count: int = 10,
        interval_s: float = 0.2,
        timeout_s: float = 1.0,
        size_bytes: Optional[int] = None,
    ) -> list:
        """``ping -n -c COUNT -i INTERVAL -W TIMEOUT [-s SIZE] DST``."""
        return ping_argv(
            dst_ip,
            count=count,
            interval_s=interval_s,
            timeout_s=timeout_s,
            size_bytes=size_bytes,
        )

    def parse(self, text: str) -> dict:
        """Turn ping output into the ``ping`` result; ToolError if there are no statistics.

        Result: ``rtt_ms`` (summary of non-duplicate reply times), ``loss_pct``,
        ``samples_ms``, ``sent``, ``received``, ``duplicates``, ``errors``
        (ICMP error messages, e.g. "Destination Host Unreachable").
        """
        out = parse_ping_output(text)
        if out.sent is None:
            detail = "; ".join(out.diagnostics) or "no statistics line in its output"
            raise ToolError(f"ping: {detail}")
        samples_ms = [reply.rtt_ms for reply in out.replies if not reply.duplicate]
        if out.loss_pct is not None:
            loss_pct = out.loss_pct
        elif out.sent:
            loss_pct = 100.0 * (out.sent - out.received) / out.sent
        else:
            loss_pct = 0.0
        return {
            "rtt_ms": summarize(samples_ms),
            "loss_pct": loss_pct,
            "samples_ms": samples_ms,
            "sent": out.sent,
            "received": out.received,
            "duplicates": out.duplicates,
            "errors": [error.message for error in out.errors],
        }

    def run(
        self,
        src: Node,
        dst: Node,
        *,
        count: int = 10,
        interval_s: float = 0.2,
        timeout_s: float = 1.0,
        size_bytes: Optional[int] = None,
    ) -> dict:
        """Ping ``dst.ip`` from ``src``; ToolError if no reply came back at all.

        ``interval_s`` below 0.2 needs root (which a lab run has).
        """
        positive_int("ping.count", count)
        positive_number("ping.interval_s", interval_s)
        positive_number("ping.timeout_s", timeout_s)
        optional_positive_int("ping.size_bytes", size_bytes)
        ip = target_ip(dst)
        self.check(src)
        argv = self.argv(
            ip, count=count, interval_s=interval_s, timeout_s=timeout_s, size_bytes=size_bytes
        )
        limit_s = count * interval_s + timeout_s + 10.0
        proc = src.run(argv, timeout_s=limit_s, check=False)
        if proc.returncode not in (0, 1):
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ToolError(
                f"ping {src.name} -> {dst.name} ({ip}) exited {proc.returncode}: "
                + (detail[-1] if detail else "no message")
            )
        try:
            result = self.parse(proc.stdout + "\n" + proc.stderr)
        except ToolError as exc:
            raise ToolError(f"ping {src.name} -> {dst.name} ({ip}): {exc}") from exc
        if result["received"] == 0:
            why = sorted(set(result["errors"])) or ["no reply within the timeout"]
            raise ToolError(
                f"ping {src.name} -> {dst.name} ({ip}): no reply to {result['sent']} "
                f"probes ({', '.join(why)})"
            )
        return result
