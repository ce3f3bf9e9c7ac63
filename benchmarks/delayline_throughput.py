"""TCP throughput through the userspace delay line: raw veth, Python engine, C engine.

Run as root from the repository root::

    /tmp/venv/bin/python benchmarks/delayline_throughput.py [--delay-ms 40] [--streams 2] [--time-s 15]

Builds its own namespaces ``<prefix>-h1``, ``<prefix>-w``, ``<prefix>-h2``
(default prefix ``bench-dl``): h1 -- veth -- wire (bridge br0, ports port-a /
port-b, like a lab's wire) -- veth -- h2, addresses in 10.253.77.0/24. The
hosts get ``tcp_rmem``/``tcp_wmem`` max of 64 MiB so the window is not the
limit at 80 ms RTT. For each case the delay line (``python -m
testbed.delayline CONFIG``) runs in the wire with ``delay`` each way and no
rate limit, iperf3 runs ``--streams`` parallel TCP streams h1 -> h2, and the
table shows the receiver's goodput, the ratio to raw, the line's CPU seconds
per GB carried and its p99 lateness. Everything it made is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["WireBench", "measure_tcp", "main"]

REPO = Path(__file__).resolve().parents[1]
H1_ADDR = "10.253.77.1"
H2_ADDR = "10.253.77.2"
PREFIX_LEN = 24
CMD_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 15.0
BIG_BUF_BYTES = 64 << 20


def _run(argv: List[str], timeout_s: float = CMD_TIMEOUT_S) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class WireBench:
    """h1 -- port-a [br0] port-b -- h2 in three namespaces named ``<prefix>-*``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.h1, self.wire, self.h2 = f"{prefix}-h1", f"{prefix}-w", f"{prefix}-h2"
        self.line: Optional[subprocess.Popen] = None
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))

    def ns(self, netns: str, argv: List[str], timeout_s: float = CMD_TIMEOUT_S) -> str:
        return _run(["ip", "netns", "exec", netns, *argv], timeout_s)

    def create(self) -> "WireBench":
        self.destroy()
        for n in (self.h1, self.wire, self.h2):
            _run(["ip", "netns", "add", n])
        _run(["ip", "link", "add", "eth0", "netns", self.h1, "type", "veth",
              "peer", "name", "port-a", "netns", self.wire])
        _run(["ip", "link", "add", "port-b", "netns", self.wire, "type", "veth",
              "peer", "name", "eth0", "netns", self.h2])
        w = self.wire
        self.ns(w, ["ip", "link", "add", "br0", "type", "bridge"])
        for port in ("port-a", "port-b"):
            self.ns(w, ["ip", "link", "set", port, "master", "br0", "up"])
        self.ns(w, ["ip", "link", "set", "br0", "up"])
        self.ns(w, ["ip", "link", "set", "lo", "up"])
        self.ns(w, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"])
        buf = f"4096 131072 {BIG_BUF_BYTES}"
        for host, addr in ((self.h1, H1_ADDR), (self.h2, H2_ADDR)):
            self.ns(host, ["ip", "link", "set", "lo", "up"])
            self.ns(host, ["ip", "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", "eth0"])
            self.ns(host, ["ip", "link", "set", "eth0", "up"])
            self.ns(host, ["sysctl", "-q", "-w", f"net.ipv4.tcp_rmem={buf}",
                           f"net.ipv4.tcp_wmem={buf}", "net.core.rmem_max=67108864",
                           "net.core.wmem_max=67108864"])
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:  # bridge ports leave 'learning' etc.
            try:
                self.ns(self.h1, ["ping", "-c", "1", "-W", "1", H2_ADDR], timeout_s=3)
                return self
            except RuntimeError:
                time.sleep(0.1)
        raise RuntimeError("wire bench: h1 cannot reach h2")

    def start_line(self, engine: str, delay_ms: float, jitter_ms: float = 0.0,
                   loss_pct: float = 0.0, max_len: int = 200_000, seed: int = 1,
                   extra: Optional[Dict] = None) -> Path:
        """Start ``python -m testbed.delayline`` in the wire; divert both directions."""
        stats = self.tmp / f"line-{engine}.stats.json"
        stats.unlink(missing_ok=True)
        queues = []
        for num, (direction, port) in enumerate((("forward", "port-a"), ("reverse", "port-b")), 1):
            queues.append({"queue_num": num, "link": "bench", "direction": direction,
                           "ifname": port, "max_len": max_len, "seed": seed * 2 + num,
                           "profile": {"delay_ms": delay_ms, "jitter_ms": jitter_ms,
                                       "jitter_distribution": "normal", "correlation_pct": 0.0,
                                       "loss_pct": loss_pct, "loss_model": "random",
                                       "duplicate_pct": 0.0, "corrupt_pct": 0.0,
                                       "reorder_pct": 0.0, **(extra or {})}})
        cfg = {"lab": self.prefix, "node": "w", "stats_path": str(stats), "engine": engine,
               "queues": queues}
        cfg_path = self.tmp / f"line-{engine}.json"
        cfg_path.write_text(json.dumps(cfg))
        log = open(self.tmp / f"line-{engine}.log", "w")
        self.line = subprocess.Popen(
            ["ip", "netns", "exec", self.wire, sys.executable, "-X", "faulthandler", "-m", "testbed.delayline",
             str(cfg_path)], stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.read_stats(stats).get("ready"):
                break
            if self.line.poll() is not None:
                raise RuntimeError("delay line exited: "
                                   + (self.tmp / f"line-{engine}.log").read_text()[-500:])
            time.sleep(0.02)
        else:
            raise RuntimeError("delay line not ready")
        for q in queues:
            self.ns(self.wire, ["iptables", "-w", "5", "-t", "mangle", "-A", "PREROUTING",
                                "-m", "physdev", "--physdev-in", q["ifname"], "-j", "NFQUEUE",
                                "--queue-num", str(q["queue_num"])])
        return stats

    @staticmethod
    def read_stats(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def stop_line(self) -> None:
        """Stop the line (SIGTERM, it writes final stats) and remove the diversion."""
        try:
            self.ns(self.wire, ["iptables", "-w", "5", "-t", "mangle", "-F", "PREROUTING"])
        except RuntimeError:
            pass
        if self.line is not None:
            self.line.terminate()  # our own pid (ip netns exec execs the line)
            try:
                self.line.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.line.kill()
                self.line.wait(timeout=5)
            self.line = None

    def destroy(self) -> None:
        self.stop_line()
        listed = _run(["ip", "netns", "list"])
        names = {line.split()[0] for line in listed.splitlines() if line.strip()}
        for n in (self.h1, self.wire, self.h2):
            if n in names:
                _run(["ip", "netns", "del", n])


def measure_tcp(bench: WireBench, streams: int, time_s: float) -> float:
    """iperf3 h1 -> h2 receiver goodput in bit/s."""
    server = subprocess.Popen(["ip", "netns", "exec", bench.h2, "iperf3", "-s", "-1", "-p", "5301"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        out = None
        while time.monotonic() < deadline:
            try:
                out = bench.ns(bench.h1, ["iperf3", "-c", H2_ADDR, "-p", "5301", "-J", "-t",
                                          str(time_s), "-O", "3", "-P", str(streams)],
                               timeout_s=time_s + 30)
                break
            except RuntimeError as exc:
                if "refused" not in str(exc) and "Connection" not in str(exc):
                    raise
                time.sleep(0.1)
        if out is None:
            raise RuntimeError("iperf3 client never connected")
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _line_case(bench: WireBench, engine: str, delay_ms: float, streams: int,
               time_s: float) -> dict:
    stats_path = bench.start_line(engine, delay_ms)
    try:
        before = bench.read_stats(stats_path)
        rtt = bench.ns(bench.h1, ["ping", "-c", "5", "-i", "0.2", H2_ADDR])
        bps = measure_tcp(bench, streams, time_s)
    finally:
        bench.stop_line()
    after = bench.read_stats(stats_path)
    cpu_s = after.get("cpu_s", 0.0) - before.get("cpu_s", 0.0)
    carried_gb = bps * (time_s + 3) / 8 / 1e9  # -O 3 omitted seconds carried data too
    fwd = after.get("queues", [{}])[0]
    avg = rtt.strip().splitlines()[-1].split("=")[-1].split("/")[1]
    return {"bps": bps, "cpu_s_per_gb": cpu_s / carried_gb if carried_gb else None,
            "late_p99_ms": fwd.get("late_ms", {}).get("p99"), "rtt_ms": float(avg),
            "received": fwd.get("received"), "dropped_queue": fwd.get("dropped_queue")}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=40.0, help="one-way delay (default 40)")
    ap.add_argument("--streams", type=int, default=2, help="parallel TCP streams (default 2)")
    ap.add_argument("--time-s", type=float, default=15.0, help="iperf3 seconds (default 15)")
    ap.add_argument("--prefix", default="bench-dl", help="namespace prefix (default bench-dl)")
    ap.add_argument("--engines", default="python,c", help="engines to run (default python,c)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("needs root (network namespaces)\n")
        return 3
    bench = WireBench(args.prefix)
    rows = []
    try:
        bench.create()
        raw = measure_tcp(bench, args.streams, args.time_s)
        rows.append(("raw veth (no line)", {"bps": raw}))
        for engine in args.engines.split(","):
            rows.append((f"{engine} line, {args.delay_ms:g} ms each way",
                         _line_case(bench, engine, args.delay_ms, args.streams, args.time_s)))
    finally:
        bench.destroy()
    print(f"TCP h1->h2, iperf3 -P {args.streams}, {args.time_s:g} s, no rate limit, "
          f"tcp_rmem/wmem max {BIG_BUF_BYTES >> 20} MiB")
    print(f"{'case':34} {'Gbit/s':>8} {'x raw':>7} {'RTT ms':>8} {'CPU s/GB':>9} {'late p99 ms':>11}")
    for name, r in rows:
        def f(key, fmt):
            v = r.get(key)
            return format(v, fmt) if isinstance(v, (int, float)) else "-"
        print(f"{name:34} {r['bps'] / 1e9:8.2f} {r['bps'] / raw:7.3f} {f('rtt_ms', '8.2f')} "
              f"{f('cpu_s_per_gb', '9.3f')} {f('late_p99_ms', '11.3f')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
