"""TCP and UDP throughput with iperf3 (``-J`` JSON output).

The runner starts a one-off server (``iperf3 -s -1 -J -p PORT``) in the
destination node, waits until ``ss`` shows *that* pid listening on the port
(polling with a deadline), runs the client in the source node, and always
reaps or kills the server by its pid.

Field meanings checked on iperf3 3.12 output (fixtures in
tests/unit/fixtures/measure/):

* TCP ``end.sum_received.bits_per_second`` is the receiver's goodput,
  ``end.sum_sent`` the sender's rate and ``retransmits``; ``intervals[].sum``
  are the client's (sender-side) per-interval figures.
* UDP ``end.sum`` mixes both sides: ``bytes``/``bits_per_second`` are what the
  sender sent, while ``jitter_ms``, ``lost_packets``, ``packets`` and
  ``lost_percent`` come from the receiver. ``end.sum_received`` (3.12) has the
  receiver's goodput, which is the throughput we report.
* On failure the client prints a document with an ``"error"`` key and, in
  3.12, still exits 0: the ``error`` key is what counts.
* A UDP test starts with one datagram each way (the client's hello, the
  server's reply) that iperf3 3.12 never resends: if either is lost the client
  waits 30 s and fails with "unable to read from stream socket: Resource
  temporarily unavailable" (esnet/iperf#862; later iperf3 releases added
  retries). On a lossy emulated path that is the configured loss at work, not
  a broken lab, so the UDP runner starts the test again, up to
  ``UDP_SETUP_ATTEMPTS`` times, and says how many it took (``setup_attempts``).
"""

from __future__ import annotations

import json
import subprocess
from typing import Callable, List, Optional

from testbed.readiness import STALL_S, wait_until
from testbed.errors import EnvironmentProblem, ToolError
from testbed.lab.node import Node
from testbed.versions import version_tuple
from testbed.measure._common import (
    optional_positive_int,
    positive_int,
    positive_number,
    require_tool,
    stop_process,
    target_ip,
)

__all__ = ["IperfServer", "IperfTcpRunner", "IperfUdpRunner", "load_iperf_json"]

_MIN_VERSION = (3, 7)  # --connect-timeout
#: iperf3's error when the UDP stream's setup datagram or its reply was lost
UDP_SETUP_LOST = "unable to read from stream socket"
#: tries of a UDP test whose setup exchange was lost (each failed try costs 30 s)
UDP_SETUP_ATTEMPTS = 3
_HINT = "apt-get install iperf3"


def load_iperf_json(text: str) -> dict:
    """Decode iperf3 ``-J`` output; ToolError quoting iperf3's ``error`` if present."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        first = text.strip().splitlines()[:1]
        raise ToolError(
            f"iperf3 output is not JSON ({exc}): {first[0] if first else 'empty output'}"
        ) from exc
    if not isinstance(doc, dict):
        raise ToolError("iperf3 output is not a JSON object")
    if doc.get("error"):
        raise ToolError(f"iperf3 reported an error: {doc['error']}")
    return doc


def _get(doc: dict, *path: str):
    node = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ToolError(f"iperf3 output lacks {'.'.join(path)}")
        node = node[key]
    return node


def _intervals(doc: dict) -> List[dict]:
    out = []
    for entry in doc.get("intervals", []):
        total = entry.get("sum", {})
        if "bits_per_second" not in total:
            continue
        out.append(
            {
                "start_s": float(total["start"]),
                "end_s": float(total["end"]),
                "mbps": float(total["bits_per_second"]) / 1e6,
                "omitted": bool(total.get("omitted", False)),
            }
        )
    return out


class IperfServer:
    """A one-off iperf3 server in ``node``; use as a context manager.

    ``__enter__`` returns once the server's own pid listens on ``port``, with
    no fixed start-up deadline (:func:`testbed.readiness.wait_until`);
    ``__exit__`` waits up to ``finish_timeout_s`` for it to finish its one
    test (not at all when the block raised), then kills it by pid.
    """

    def __init__(self, node: Node, port: int = 5201, stall_s: float = STALL_S,
                 finish_timeout_s: float = 2.0):
        self.node = node
        self.port = port
        self.stall_s = stall_s
        self.finish_timeout_s = finish_timeout_s
        self.proc: Optional[subprocess.Popen] = None
        self.output = ""

    def argv(self) -> list:
        """``iperf3 -s -1 -J -p PORT``."""
        return ["iperf3", "-s", "-1", "-J", "-p", str(self.port)]

    def _listening(self) -> bool:
        if self.proc is None:
            return False
        proc = self.node.run(["ss", "-Hltnp", f"sport = :{self.port}"], timeout_s=5.0)
        if getattr(self.node, "remote", ()):
            # on another machine (over ssh) our pid is ssh's, not the server's; the
            # namespace is the lab's own, so a listener on the port is ours
            return "iperf3" in proc.stdout
        return f"pid={self.proc.pid}," in proc.stdout

    def _died(self) -> ToolError:
        out, err = self.proc.communicate(timeout=5.0)
        self.output = out
        where = f"iperf3 server on {self.node.name} port {self.port}"
        if out.strip():
            try:
                load_iperf_json(out)
            except ToolError as exc:
                return ToolError(f"{where}: {exc}")
        lines = err.strip().splitlines()
        return ToolError(f"{where} exited {self.proc.returncode} before listening: "
                         + (lines[-1] if lines else "no message"))

    def __enter__(self) -> "IperfServer":
        self.proc = self.node.popen(self.argv())
        try:
            if self.proc.poll() is not None:
                raise self._died()
            wait_until(self._listening, f"iperf3 server on {self.node.name} (port {self.port})",
                       pid=self.proc.pid, stall_s=self.stall_s,
                       exited=lambda: None if self.proc.poll() is None else str(self._died()))
        except BaseException:
            stop_process(self.proc)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self.proc is None:
            return
        try:
            if exc_type is None:  # the test ran: give the server time to finish it
                out, _err = self.proc.communicate(timeout=self.finish_timeout_s)
                self.output = out
        except subprocess.TimeoutExpired:
            pass
        finally:
            stop_process(self.proc)


class _IperfRunner:
    """Shared check/run plumbing of the TCP and UDP runners."""

    name = ""
    tool = "iperf3"

    def check(self, node: Node) -> None:
        """iperf3 (>= 3.7) and ss must be installed."""
        require_tool("iperf3", _HINT)
        require_tool("ss", "apt-get install iproute2")
        version = version_tuple("iperf3")
        if version < _MIN_VERSION:
            found = ".".join(map(str, version))
            raise EnvironmentProblem(f"iperf3 {found} is too old; need 3.7 or newer", _HINT)

    def parse(self, text: str) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _run(self, src: Node, dst: Node, argv: list, port: int, duration_s: float) -> dict:
        self.check(src)
        label = f"iperf3 {self.name} {src.name} -> {dst.name} ({dst.ip})"
        with IperfServer(dst, port=port):
            proc = src.run(argv, timeout_s=duration_s + 30.0, check=False)
            try:
                result = self.parse(proc.stdout)
            except ToolError as exc:
                stderr = proc.stderr.strip()
                extra = f"; stderr: {stderr.splitlines()[-1]}" if stderr else ""
                raise ToolError(f"{label}: {exc}{extra}") from exc
            if proc.returncode != 0:
                raise ToolError(f"{label}: client exited {proc.returncode}")
        return result


class IperfTcpRunner(_IperfRunner):
    """Bulk TCP throughput (Flent lifecycle)."""

    name = "tcp"

    def argv(
        self,
        dst_ip: str,
        *,
        duration_s: float = 5.0,
        streams: int = 1,
        interval_s: float = 1.0,
        port: int = 5201,
        congestion: Optional[str] = None,
        window_bytes: Optional[int] = None,
        mss_bytes: Optional[int] = None,
    ) -> list:
        """``iperf3 -c DST -J -t DURATION -P STREAMS -i INTERVAL [-C cc] [-w W] [-M MSS]``."""
        argv = ["iperf3", "-c", dst_ip, "-J", "-p", str(port), "-t", f"{duration_s:g}",
                "-P", str(streams), "-i", f"{interval_s:g}", "--connect-timeout", "3000"]
        if congestion is not None:
            argv += ["-C", congestion]
        if window_bytes is not None:
            argv += ["-w", str(window_bytes)]
        if mss_bytes is not None:
            argv += ["-M", str(mss_bytes)]
        return argv

    def parse(self, text: str) -> dict:
        """TCP result: receiver goodput, sender rate, retransmits, intervals."""
        doc = load_iperf_json(text)
        received = _get(doc, "end", "sum_received")
        sent = _get(doc, "end", "sum_sent")
        streams = doc.get("start", {}).get("test_start", {}).get("num_streams")
        rtts_us = [
            s["sender"]["mean_rtt"]
            for s in doc.get("end", {}).get("streams", [])
            if isinstance(s.get("sender"), dict) and "mean_rtt" in s["sender"]
        ]
        return {
            "throughput_mbps": float(received["bits_per_second"]) / 1e6,
            "sender_mbps": float(sent["bits_per_second"]) / 1e6,
            "retransmits": int(sent.get("retransmits", 0)),
            "bytes_received": int(received["bytes"]),
            "duration_s": float(received["seconds"]),
            "streams": int(streams) if streams is not None else len(doc["end"].get("streams", [])),
            "congestion": doc["end"].get("sender_tcp_congestion"),
            "mean_rtt_ms": sum(rtts_us) / len(rtts_us) / 1000.0 if rtts_us else None,
            "intervals": _intervals(doc),
        }

    def run(
        self,
        src: Node,
        dst: Node,
        *,
        duration_s: float = 5.0,
        streams: int = 1,
        interval_s: float = 1.0,
        port: int = 5201,
        congestion: Optional[str] = None,
        window_bytes: Optional[int] = None,
        mss_bytes: Optional[int] = None,
    ) -> dict:
        """TCP from ``src`` (client) to ``dst`` (server)."""
        positive_number("tcp.duration_s", duration_s)
        positive_int("tcp.streams", streams, maximum=128)
        positive_number("tcp.interval_s", interval_s)
        positive_int("tcp.port", port, maximum=65535)
        optional_positive_int("tcp.window_bytes", window_bytes)
        optional_positive_int("tcp.mss_bytes", mss_bytes)
        argv = self.argv(target_ip(dst), duration_s=duration_s, streams=streams,
                         interval_s=interval_s, port=port, congestion=congestion,
                         window_bytes=window_bytes, mss_bytes=mss_bytes)
        return self._run(src, dst, argv, port, duration_s)


class IperfUdpRunner(_IperfRunner):
    """UDP at a fixed bitrate: goodput, jitter, loss, reordering (Flent lifecycle)."""

    name = "udp"

    def argv(
        self,
        dst_ip: str,
        *,
        bitrate_bps: int = 100_000_000,
        length_bytes: int = 1200,
        duration_s: float = 5.0,
        streams: int = 1,
        interval_s: float = 1.0,
        port: int = 5201,
    ) -> list:
        """``iperf3 -c DST -J -u -b BITRATE -l LEN -t DURATION -P STREAMS -i INTERVAL``."""
        return ["iperf3", "-c", dst_ip, "-J", "-p", str(port), "-u",
                "-b", str(bitrate_bps), "-l", str(length_bytes), "-t", f"{duration_s:g}",
                "-P", str(streams), "-i", f"{interval_s:g}", "--connect-timeout", "3000"]

    def parse(self, text: str) -> dict:
        """UDP result: receiver goodput, jitter, loss, out-of-order, packets."""
        doc = load_iperf_json(text)
        total = _get(doc, "end", "sum")
        received = doc["end"].get("sum_received", total)
        sent = doc["end"].get("sum_sent", total)
        out_of_order = sum(
            int(s.get("udp", {}).get("out_of_order", 0)) for s in doc["end"].get("streams", [])
        )
        return {
            "throughput_mbps": float(received["bits_per_second"]) / 1e6,
            "sender_mbps": float(sent["bits_per_second"]) / 1e6,
            "jitter_ms": float(_get(doc, "end", "sum", "jitter_ms")),
            "loss_pct": float(_get(doc, "end", "sum", "lost_percent")),
            "lost_packets": int(_get(doc, "end", "sum", "lost_packets")),
            "packets": int(_get(doc, "end", "sum", "packets")),
            "out_of_order": out_of_order,
            "streams": len(doc["end"].get("streams", [])),
            "intervals": _intervals(doc),
        }

    def run(
        self,
        src: Node,
        dst: Node,
        progress: Callable[[str], None] = lambda _m: None,
        *,
        bitrate_bps: int = 100_000_000,
        length_bytes: int = 1200,
        duration_s: float = 5.0,
        streams: int = 1,
        interval_s: float = 1.0,
        port: int = 5201,
    ) -> dict:
        """UDP from ``src`` (client) to ``dst`` (server); ``bitrate_bps`` per stream.

        A test whose setup exchange was lost is started again (module
        docstring); ``progress`` hears why (it is no measurement option, so
        it stands before them), and the result's ``setup_attempts`` says how
        many starts it took.
        """
        positive_int("udp.bitrate_bps", bitrate_bps)
        positive_int("udp.length_bytes", length_bytes, maximum=65507)
        positive_number("udp.duration_s", duration_s)
        positive_int("udp.streams", streams, maximum=128)
        positive_number("udp.interval_s", interval_s)
        positive_int("udp.port", port, maximum=65535)
        argv = self.argv(target_ip(dst), bitrate_bps=bitrate_bps, length_bytes=length_bytes,
                         duration_s=duration_s, streams=streams, interval_s=interval_s,
                         port=port)
        for attempt in range(1, UDP_SETUP_ATTEMPTS + 1):
            try:
                result = self._run(src, dst, argv, port, duration_s)
            except ToolError as exc:
                if UDP_SETUP_LOST not in str(exc) or attempt == UDP_SETUP_ATTEMPTS:
                    raise
                progress(f"{exc}: the setup exchange was lost and iperf3 does not resend it; "
                         f"starting the test again ({attempt + 1} of {UDP_SETUP_ATTEMPTS})")
                continue
            result["setup_attempts"] = attempt
            return result
        raise AssertionError("unreachable")  # pragma: no cover
