"""Each measurement runner once between real namespaces (root only).

Namespaces are named ``tbm-<pid>-<x>`` and always deleted in teardown. Two
labs: ``a``-``b`` joined by one veth with MTU 1400 (10.201.0.1/.2), and
``c``-``r``-``d`` through a router whose far side has MTU 1300
(10.201.2.0/24, 10.201.3.0/24).
"""

import os
import shutil
import subprocess

import pytest

import helpers  # tests/helpers.py, on the path through tests/conftest.py
from testbed.errors import ToolError
from testbed.lab.node import Node
from testbed.measure import RUNNERS, time_to_steady_s

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces", allow_module_level=True)
for _tool in ("ip", "ping", "iperf3", "ss"):
    if shutil.which(_tool) is None:
        pytest.skip(f"needs {_tool} on PATH", allow_module_level=True)

PREFIX = f"tbm-{os.getpid()}"
VETH_MTU = 1400
FAR_MTU = 1300


def ip(*args):
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)


def netns_pids(netns):
    out = subprocess.run(["ip", "netns", "pids", netns], check=True, timeout=10,
                         capture_output=True, text=True).stdout
    return out.split()


def _veth(ns1, if1, ns2, if2):
    ip("link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2)


@pytest.fixture(scope="module")
def lab():
    tag = str(os.getpid())
    names = {x: f"{PREFIX}-{x}" for x in "abcrd"}
    created = []
    try:
        for netns in names.values():
            ip("netns", "add", netns)
            created.append(netns)
            ip("-n", netns, "link", "set", "lo", "up")
        a, b, c, r, d = (names[x] for x in "abcrd")
        # direct pair
        _veth(a, f"tbm{tag}a", b, f"tbm{tag}b")
        ip("-n", a, "addr", "add", "10.201.0.1/24", "dev", f"tbm{tag}a")
        ip("-n", b, "addr", "add", "10.201.0.2/24", "dev", f"tbm{tag}b")
        ip("-n", a, "link", "set", f"tbm{tag}a", "mtu", str(VETH_MTU), "up")
        ip("-n", b, "link", "set", f"tbm{tag}b", "mtu", str(VETH_MTU), "up")
        # routed: c - r - d, far side MTU 1300
        _veth(c, f"tbm{tag}c", r, f"tbm{tag}r0")
        _veth(r, f"tbm{tag}r1", d, f"tbm{tag}d")
        ip("-n", c, "addr", "add", "10.201.2.1/24", "dev", f"tbm{tag}c")
        ip("-n", r, "addr", "add", "10.201.2.2/24", "dev", f"tbm{tag}r0")
        ip("-n", r, "addr", "add", "10.201.3.1/24", "dev", f"tbm{tag}r1")
        ip("-n", d, "addr", "add", "10.201.3.2/24", "dev", f"tbm{tag}d")
        ip("-n", c, "link", "set", f"tbm{tag}c", "up")
        ip("-n", r, "link", "set", f"tbm{tag}r0", "up")
        ip("-n", r, "link", "set", f"tbm{tag}r1", "mtu", str(FAR_MTU), "up")
        ip("-n", d, "link", "set", f"tbm{tag}d", "mtu", str(FAR_MTU), "up")
        ip("-n", c, "route", "add", "default", "via", "10.201.2.2")
        ip("-n", d, "route", "add", "default", "via", "10.201.3.1")
        subprocess.run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True, timeout=10)
        yield {
            "a": Node("a", a, "10.201.0.1"),
            "b": Node("b", b, "10.201.0.2"),
            "c": Node("c", c, "10.201.2.1"),
            "r": Node("r", r, "10.201.2.2", role="router"),
            "d": Node("d", d, "10.201.3.2"),
        }
    finally:
        for netns in reversed(created):
            subprocess.run(["ip", "netns", "del", netns], timeout=10, capture_output=True)


@pytest.fixture(autouse=True)
def no_process_left_behind(lab):
    yield
    for node in lab.values():
        assert netns_pids(node.netns) == [], f"processes left in {node.netns}"


@pytest.fixture
def drop_in_b(lab):
    """Random 20 % drop of UDP arriving in b (iptables statistic match)."""
    if shutil.which("iptables") is None:
        pytest.skip("needs iptables")
    rule = ["INPUT", "-p", "udp", "-m", "statistic", "--mode", "random",
            "--probability", "0.2", "-j", "DROP"]
    b = lab["b"]
    b.run(["iptables", "-A", *rule], timeout_s=10)
    try:
        yield
    finally:
        b.run(["iptables", "-D", *rule], timeout_s=10)


def test_ping_on_bare_veth(lab):
    result = RUNNERS["ping"].run(lab["a"], lab["b"], count=10, interval_s=0.01)
    assert result["received"] == 10 and result["loss_pct"] == 0.0
    assert 0 < result["rtt_ms"]["min"] <= result["rtt_ms"]["max"] < 5.0


def test_ping_to_absent_host_fails_clearly(lab):
    ghost = Node("ghost", lab["b"].netns, "10.201.0.99")
    with pytest.raises(ToolError, match="a -> ghost .*no reply"):
        RUNNERS["ping"].run(lab["a"], ghost, count=2, interval_s=0.2, timeout_s=0.5)


def test_owd_one_direction(lab):
    result = RUNNERS["owd"].run(lab["a"], lab["b"], count=100, interval_ms=2.0)
    assert result["received"] == result["sent"] == 100
    assert result["loss_pct"] == 0.0
    assert result["reordered"] == 0 and result["duplicates"] == 0
    owd = result["one_way_delay_ms"]
    assert 0 < owd["min"] and owd["p50"] < 2.0, owd
    assert result["jitter_ms"] < 1.0
    # the kernel's arrival time, not the receiver's wake-up (owd_probe: SO_TIMESTAMPNS)
    assert result["receive_stamp"] == "kernel"


def test_owd_both_directions_at_once(lab):
    result = RUNNERS["owd"].run_both(lab["a"], lab["b"], count=50, interval_ms=2.0)
    for direction in ("forward", "reverse"):
        assert result[direction]["loss_pct"] == 0.0, direction
        assert result[direction]["one_way_delay_ms"]["p50"] < 2.0, direction


def test_owd_sees_induced_loss(lab, drop_in_b):
    result = RUNNERS["owd"].run(lab["a"], lab["b"], count=300, interval_ms=1.0,
                                grace_ms=300)
    # binomial(300, 0.2): mean 20 %, sd 2.3 %; the band is > 4 sd wide each way
    assert 10.0 < result["loss_pct"] < 30.0, result["loss_pct"]


def test_tcp_on_bare_veth(lab):
    result = RUNNERS["tcp"].run(lab["a"], lab["b"], duration_s=1.0, interval_s=0.25)
    assert result["throughput_mbps"] > 100.0, result["throughput_mbps"]
    assert result["streams"] == 1
    assert len(result["intervals"]) >= 3


SHAPED_RATE_BPS = 40_000_000
SHAPED_WINDOW_BYTES = 64 * 1024  # iperf3 -w: the kernel doubles it, so SO_SNDBUF = 128 KiB
STEADY_INTERVAL_S = 0.25
STEADY_TOLERANCE = 0.3


@pytest.fixture
def shaped_c_to_d(lab):
    """An htb class of SHAPED_RATE_BPS on r's egress towards d (the c -> d direction)."""
    r, dev = lab["r"].netns, f"tbm{os.getpid()}r1"
    tc = ["tc", "-n", r]
    subprocess.run(tc + ["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
                   check=True, timeout=10, capture_output=True)
    try:
        subprocess.run(tc + ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
                             "rate", f"{SHAPED_RATE_BPS}bit", "ceil", f"{SHAPED_RATE_BPS}bit"],
                       check=True, timeout=10, capture_output=True)
        yield SHAPED_RATE_BPS
    finally:
        subprocess.run(tc + ["qdisc", "del", "dev", dev, "root"], timeout=10, capture_output=True)


def test_tcp_over_a_shaped_link_is_steady_from_its_first_interval(lab, shaped_c_to_d):
    """A link shaped at R is steady from the start: ``time_to_steady_s`` must say 0.0.

    Why, from what the detector defines (testbed/measure/steady.py): the final
    level is the mean of the last half of the intervals, and the answer is the
    start of the earliest interval from which every interval is within the
    tolerance of it. The intervals are the sender's bytes written per T
    (iperf3 client side). Once the shaper is backlogged -- within a few round
    trips of well under a millisecond each, here -- it delivers R x T per
    interval, and what the sender writes in an interval differs from what is
    delivered by the change in what it holds unacknowledged or unsent, at most
    its send buffer (SO_SNDBUF = 2 x the -w window = 128 KiB). With R = 40
    Mbit/s and T = 0.25 s, R x T = 1.25 MB, so every interval, the first one
    included, is within 128 KiB / 1.25 MB = 10.5 % of R x T (and so of the
    final level) plus timer slop; the tolerance is 30 %. Steady later than
    0.0 s, or never (None), is a detector or runner fault. The final level is
    checked against the shaped rate's TCP goodput (MTU 1300: 1248 payload
    bytes per 1314 on the wire) so the link really was the bottleneck.
    """
    goodput_mbps = shaped_c_to_d / 1e6 * (FAR_MTU - 52) / (FAR_MTU + 14)

    def measure():
        result = RUNNERS["tcp"].run(lab["c"], lab["d"], duration_s=2.0, interval_s=STEADY_INTERVAL_S,
                                    window_bytes=SHAPED_WINDOW_BYTES)
        intervals = result["intervals"]
        rates = [round(i["mbps"], 1) for i in intervals]
        tail = rates[len(rates) // 2:]
        final_mbps = sum(tail) / len(tail)
        steady_s = time_to_steady_s(intervals, tolerance=STEADY_TOLERANCE)
        print(f"steady {steady_s} s, final level {final_mbps:.1f} Mbit/s (goodput at the shaped "
              f"rate {goodput_mbps:.1f}), intervals {rates}")
        assert len(intervals) >= 7, rates
        assert abs(final_mbps - goodput_mbps) <= STEADY_TOLERANCE * goodput_mbps, (
            f"final level {final_mbps:.1f} Mbit/s, shaped goodput {goodput_mbps:.1f}: {rates}")
        # a None (never steady) counts as out of bounds
        return (steady_s if steady_s is not None else float("inf")), (
            f"(final level {final_mbps:.1f} Mbit/s, intervals {rates})")

    helpers.judge_repeated("time to steady over a 40 Mbit/s link", measure, 0.0, 0.0, 0.0, unit=" s")


def test_tcp_error_is_a_tool_error_and_server_is_gone(lab):
    with pytest.raises(ToolError, match="TCP_CONGESTION"):
        RUNNERS["tcp"].run(lab["a"], lab["b"], duration_s=1.0, congestion="nosuchcc")
    # no_process_left_behind checks the server was killed


def test_udp_at_fixed_rate(lab):
    result = RUNNERS["udp"].run(lab["a"], lab["b"], bitrate_bps=50_000_000,
                                duration_s=1.0, interval_s=0.5)
    assert 45.0 < result["throughput_mbps"] < 55.0, result["throughput_mbps"]
    assert result["loss_pct"] < 1.0
    assert result["packets"] > 4000


def test_path_direct(lab):
    result = RUNNERS["path"].run(lab["a"], lab["b"])
    assert result == {"ttl_hops": 1, "routers": [], "path_mtu": VETH_MTU}


def test_path_through_router_with_smaller_far_mtu(lab):
    result = RUNNERS["path"].run(lab["c"], lab["d"])
    assert result == {"ttl_hops": 2, "routers": ["10.201.2.2"], "path_mtu": FAR_MTU}
