"""The C delay-line engine on a real wire: delay, order under jitter, loss.

Builds its own namespaces ``tbf-it-h1``, ``tbf-it-w``, ``tbf-it-h2`` (h1 --
port-a [br0] port-b -- h2, the shape of a lab's wire; the topology helper
is the benchmark's ``WireBench``) and runs ``python -m testbed.delayline``
with ``"engine": "c"`` in the wire. Oracles are independent of the line:
``ping`` RTTs and a UDP probe stream with sequence numbers received in h2.

* idle ping RTT mean within 0.3 ms of twice the one-way delay (5 and 40 ms);
* jitter (normal, 3 ms at 10 ms) reorders no probe;
* 2 % random loss: lost probes inside the 99.9 % binomial interval;
* the stats file has the keys the runner reads;
* a line with loss runs SCHED_FIFO, others nice -20; a constant one batches its reads.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DELAY_TOLERANCE_MS = 0.3
PROBES = 3000
PROBE_GAP_S = 0.001
PROBE_PORT = 5399

_fastline = pytest.importorskip("testbed.delayline._fastline", reason="C engine not built")


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "delayline_throughput", REPO / "benchmarks" / "delayline_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _bench_module()

RECEIVER = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(10.0)
seqs = []
print("ready", flush=True)
try:
    s.recv(64)  # first datagram starts the quiet-period timer
    s.settimeout(1.5)
    while True:
        seqs.append(int(s.recv(64)))
except socket.timeout:
    pass
print(json.dumps(seqs), flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst = (sys.argv[1], int(sys.argv[2])); n = int(sys.argv[3]); gap = float(sys.argv[4])
s.sendto(b"-1", dst)
time.sleep(0.2)
t = time.monotonic()
for i in range(n):
    s.sendto(str(i).encode(), dst)
    t += gap
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)
"""


@pytest.fixture
def wire():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    bench = BENCH.WireBench("tbf-it")
    try:
        bench.create()
        yield bench
    finally:
        bench.destroy()


def _ping_mean_ms(bench, count: int = 40) -> float:
    out = bench.ns(bench.h1, ["ping", "-c", str(count), "-i", "0.05", BENCH.H2_ADDR],
                   timeout_s=count * 0.05 + 20)
    return float(out.strip().splitlines()[-1].split("=")[-1].split("/")[1])


def _probe(bench) -> list:
    """Send PROBES numbered UDP datagrams h1 -> h2; the sequence numbers h2 received."""
    recv = subprocess.Popen(["ip", "netns", "exec", bench.h2, sys.executable, "-c", RECEIVER,
                             str(PROBE_PORT)], stdout=subprocess.PIPE, text=True)
    try:
        if recv.stdout.readline().strip() != "ready":
            raise RuntimeError("probe receiver did not start")
        bench.ns(bench.h1, [sys.executable, "-c", SENDER, BENCH.H2_ADDR, str(PROBE_PORT),
                            str(PROBES), str(PROBE_GAP_S)], timeout_s=PROBES * PROBE_GAP_S + 30)
        out, _ = recv.communicate(timeout=30)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait(timeout=5)
    return [s for s in json.loads(out.strip().splitlines()[-1]) if s >= 0]


@pytest.mark.parametrize("delay_ms", [5.0, 40.0])
def test_idle_rtt_is_twice_the_delay(wire, delay_ms):
    stats_path = wire.start_line("c", delay_ms)
    _ping_mean_ms(wire, 2)  # ARP and warm-up
    means = [_ping_mean_ms(wire) for _ in range(3)]
    stats = wire.read_stats(stats_path)
    assert stats.get("engine") == "c"
    ok = [m for m in means if abs(m - 2 * delay_ms) <= DELAY_TOLERANCE_MS]
    assert len(ok) >= 2, (f"expected RTT {2 * delay_ms} ms +- {DELAY_TOLERANCE_MS} "
                          f"([{2 * delay_ms - DELAY_TOLERANCE_MS}, {2 * delay_ms + DELAY_TOLERANCE_MS}]), "
                          f"measured means {means}")


def test_jitter_does_not_reorder(wire):
    wire.start_line("c", 10.0, jitter_ms=3.0)
    seqs = _probe(wire)
    assert len(seqs) > PROBES * 0.99, f"only {len(seqs)} of {PROBES} probes arrived"
    reordered = sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
    assert reordered == 0, f"{reordered} probes arrived out of order with reorder off"


def test_loss_rate_within_binomial_interval(wire):
    loss_pct = 2.0
    stats_path = wire.start_line("c", 2.0, loss_pct=loss_pct)
    seqs = _probe(wire)
    # forward and reverse both lose, but UDP probes only cross forward
    lost = PROBES - len(set(seqs))
    p = loss_pct / 100.0
    half = 3.29 * math.sqrt(PROBES * p * (1 - p))  # 99.9 %
    low, high = PROBES * p - half, PROBES * p + half
    assert low <= lost <= high, f"lost {lost} of {PROBES}: expected {PROBES * p:.0f} in [{low:.0f}, {high:.0f}]"
    wire.stop_line()
    stats = wire.read_stats(stats_path)
    fwd = stats["queues"][0]
    assert stats["final"] and fwd["dropped_loss"] >= lost  # the line's own count agrees
    for key in ("queue_num", "link", "direction", "ifname", "received", "accepted", "dropped_loss",
                "dropped_queue", "held", "held_max"):
        assert key in fwd, key
    assert set(fwd["late_ms"]) == {"p50", "p99", "max", "samples"}
    assert fwd["late_ms"]["samples"] == fwd["accepted"]


def test_line_priority_follows_what_it_handles(wire):
    """Loss (every wire packet judged): SCHED_FIFO, as the stats and the kernel say.
    Otherwise the normal scheduler at nice -20; a constant delay batches its reads
    (testbed/delayline/priority.py)."""
    from testbed.delayline.priority import DEFAULT_PRIORITY, NICE

    stats = wire.read_stats(wire.start_line("c", 2.0, loss_pct=1.0))
    assert stats["sched"] == {"policy": "fifo", "priority": DEFAULT_PRIORITY}
    assert os.sched_getscheduler(stats["pid"]) == os.SCHED_FIFO
    assert os.sched_getparam(stats["pid"]).sched_priority == DEFAULT_PRIORITY
    wire.stop_line()
    stats = wire.read_stats(wire.start_line("c", 2.0, jitter_ms=0.5))
    assert stats["sched"] == {"policy": "normal", "nice": NICE}
    assert os.sched_getscheduler(stats["pid"]) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, stats["pid"]) == NICE
    assert stats["read_batch_us"] == 0.0  # jitter: every arrival read at once
    wire.stop_line()
    stats = wire.read_stats(wire.start_line("c", 2.0))
    assert stats["sched"] == {"policy": "normal", "nice": NICE}
    assert stats["read_batch_us"] == 500.0  # half the 2 ms delay, at most 0.5 ms
