"""The netem backend against a real kernel: qdisc state and packets.

Needs root and a kernel with the netem qdisc; everything else SKIPS with the
reason :meth:`NetemBackend.available` gives (on a kernel without netem:
"kernel has no netem qdisc (Specified qdisc kind is unknown)").

Each test gets two fresh namespaces ``tbn-nl<pid>-<n>a`` / ``...b`` joined by
a veth pair and removes them afterwards. The oracle for kernel state is
``tc -j qdisc show`` (iproute2's JSON: times in seconds, probabilities as
fractions), never pyroute2; traffic is ping between the two namespaces only.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import json
import os
import re
import subprocess
from dataclasses import dataclass

import pytest
from pyroute2 import IPRoute

import helpers  # tests/helpers.py, on the path through tests/conftest.py

from testbed.errors import KernelError
from testbed.profile import LinkProfile
from testbed.shaping.netem import NetemBackend

pytestmark = [pytest.mark.integration, pytest.mark.netem]

TIMEOUT_S = 20.0
SUBNET = ipaddress.ip_network("198.18.200.0/30")  # RFC 2544 benchmarking range
A_ADDR, B_ADDR = "198.18.200.1", "198.18.200.2"
_counter = itertools.count()


def run(argv, timeout_s=TIMEOUT_S) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture(scope="module")
def netem_works():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces and tc)")
    ok, reason = NetemBackend().available()
    if not ok:
        pytest.skip(f"netem backend unavailable: {reason}")
    for route in json.loads(run(["ip", "-j", "route", "show", "table", "all"])):
        dst = route.get("dst", "")
        try:
            overlaps = ipaddress.ip_network(dst, strict=False).overlaps(SUBNET)
        except ValueError:  # "default", "local", IPv6 ...
            continue
        if overlaps and dst not in ("0.0.0.0/0",):
            pytest.skip(f"root namespace has a route to {dst}, overlapping the test's {SUBNET}")


@dataclass
class Pair:
    ns_a: str
    ns_b: str
    if_a: str = "tbn-a0"
    if_b: str = "tbn-b0"

    def apply(self, side: str, profile, limit_pkts=1000, parent=None, handle=0x10000):
        ns, ifname = (self.ns_a, self.if_a) if side == "a" else (self.ns_b, self.if_b)
        with IPRoute(netns=ns, ext_ack=True) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            NetemBackend().apply(ipr, index, parent, handle, profile, limit_pkts)

    def netem_json(self, side: str) -> dict:
        ns, ifname = (self.ns_a, self.if_a) if side == "a" else (self.ns_b, self.if_b)
        qdiscs = json.loads(run(["tc", "-j", "-n", ns, "qdisc", "show", "dev", ifname]))
        found = [q for q in qdiscs if q.get("kind") == "netem"]
        assert len(found) == 1, f"expected one netem qdisc on {ifname}, tc shows {qdiscs}"
        return found[0]

    def ping(self, count: int, interval_s: float) -> str:
        argv = ["ip", "netns", "exec", self.ns_a, "ping", "-n", "-c", str(count),
                "-i", f"{interval_s:g}", "-W", "2", B_ADDR]
        return run(argv, timeout_s=TIMEOUT_S + count * interval_s)


@pytest.fixture
def pair(netem_works):
    n = next(_counter)
    pair = Pair(ns_a=f"tbn-nl{os.getpid()}-{n}a", ns_b=f"tbn-nl{os.getpid()}-{n}b")
    created = []
    try:
        for ns in (pair.ns_a, pair.ns_b):
            run(["ip", "netns", "add", ns])
            created.append(ns)
        run(["ip", "-n", pair.ns_a, "link", "add", pair.if_a, "type", "veth",
             "peer", "name", pair.if_b, "netns", pair.ns_b])
        for ns, ifname, addr in ((pair.ns_a, pair.if_a, A_ADDR), (pair.ns_b, pair.if_b, B_ADDR)):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", ifname])
            run(["ip", "-n", ns, "link", "set", ifname, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        yield pair
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=TIMEOUT_S)


def test_plain_profile_as_root_qdisc(pair):
    profile = LinkProfile(delay_ms=20, loss_pct=0.5, duplicate_pct=1, corrupt_pct=0.1)
    pair.apply("a", profile, limit_pkts=777)
    q = pair.netem_json("a")
    opts = q["options"]
    assert q["root"] is True
    assert opts["limit"] == 777
    assert opts["delay"]["delay"] == pytest.approx(0.020, abs=1e-6)
    assert opts["delay"]["jitter"] == pytest.approx(0.0, abs=1e-9)
    assert opts["loss-random"]["loss"] == pytest.approx(0.005, rel=1e-6)
    assert opts["duplicate"]["duplicate"] == pytest.approx(0.01, rel=1e-6)
    assert opts["corrupt"]["corrupt"] == pytest.approx(0.001, rel=1e-6)
    assert "rate" not in opts  # no jitter: no FIFO rate needed
    assert "loss-gemodel" not in opts


def test_jitter_profile_carries_correlation_and_fifo_rate(pair):
    profile = LinkProfile(delay_ms=10, jitter_ms=2, correlation_pct=25)
    pair.apply("a", profile)
    opts = pair.netem_json("a")["options"]
    assert opts["delay"]["delay"] == pytest.approx(0.010, abs=1e-6)
    assert opts["delay"]["jitter"] == pytest.approx(0.002, abs=1e-6)
    assert opts["delay"]["correlation"] == pytest.approx(0.25, rel=1e-6)
    # iproute2 prints the netem rate in bytes/s in JSON (bits/s in text)
    assert opts["rate"]["rate"] in (10**12, 8 * 10**12)


def test_gilbert_elliott_loss(pair):
    profile = LinkProfile(delay_ms=1, loss_pct=1, loss_model="gilbert-elliott", loss_burst_pkts=4)
    pair.apply("a", profile)
    ge = pair.netem_json("a")["options"]["loss-gemodel"]
    # tc prints these with printf's %g: 6 significant digits (p = 0.00252525 for
    # 0.0025252525...), so half a unit in the 6th digit is the precision to expect
    assert ge["p"] == pytest.approx(0.01 * 0.25 / 0.99, rel=5e-6)
    assert ge["r"] == pytest.approx(0.25, rel=1e-6)
    assert ge["1-h"] == pytest.approx(1.0, rel=1e-6)  # the bad state loses everything
    assert ge["1-k"] == pytest.approx(0.0, abs=1e-9)  # the good state loses nothing


def test_reorder_sets_gap_one(pair):
    pair.apply("a", LinkProfile(delay_ms=10, reorder_pct=25))
    opts = pair.netem_json("a")["options"]
    assert opts["reorder"]["reorder"] == pytest.approx(0.25, rel=1e-6)
    assert opts["gap"] == 1


def test_leaf_of_htb_class(pair):
    run(["tc", "-n", pair.ns_a, "qdisc", "add", "dev", pair.if_a, "root", "handle", "1:",
         "htb", "default", "1"])
    run(["tc", "-n", pair.ns_a, "class", "add", "dev", pair.if_a, "parent", "1:",
         "classid", "1:1", "htb", "rate", "100mbit"])
    pair.apply("a", LinkProfile(delay_ms=5), parent=0x10001, handle=0x100000)
    q = pair.netem_json("a")
    assert q["handle"] == "10:"
    assert q["parent"] == "1:1"
    assert q["options"]["delay"]["delay"] == pytest.approx(0.005, abs=1e-6)


def test_kernel_refusal_becomes_kernel_error(pair):
    pair.apply("a", LinkProfile(delay_ms=5))
    with pytest.raises(KernelError) as info:
        pair.apply("a", LinkProfile(delay_ms=5))  # same root handle, NLM_F_EXCL
    assert info.value.errno == errno.EEXIST
    assert pair.if_a in str(info.value)


def _rtt_avg_ms(output: str) -> float:
    match = re.search(r"= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms", output)
    assert match, f"no rtt summary in ping output:\n{output}"
    return float(match.group(1))


def test_ping_rtt_is_twice_the_delay(pair):
    """Twice the delay plus what the machine adds: the same pair's RTT before netem and
    its spread, and upward the wake-up lateness measured during each ping run (netem's
    timer fires that late) with three standard errors of the mean from its spread
    (helpers.Baseline.rtt_bounds; hundredths of a ms on hardware)."""
    delay_ms = 5.0
    pair.ping(count=2, interval_s=0.05)  # ARP
    baseline = helpers.measure_baseline(lambda: _rtt_avg_ms(pair.ping(count=20, interval_s=0.05)))
    for side in ("a", "b"):
        pair.apply(side, LinkProfile(delay_ms=delay_ms))

    count = 50

    def measure():
        with helpers.WakeupLateness() as late:
            rtt_ms = _rtt_avg_ms(pair.ping(count=count, interval_s=0.05))
        return rtt_ms, str(late), baseline.rtt_bounds(2 * delay_ms, 0.3, late, samples=count)

    helpers.judge_repeated(f"ping mean RTT over netem delay {delay_ms:g} ms ({baseline})",
                           measure, unit=" ms")


def test_jitter_does_not_reorder_a_flow(pair):
    # 2 ms between packets, delay 10 ms +- 4 ms uniform: netem's plain tfifo would
    # reorder a large share of these; with the FIFO rate none may overtake another.
    pair.apply("a", LinkProfile(delay_ms=10, jitter_ms=4, jitter_distribution="uniform"))
    output = pair.ping(count=300, interval_s=0.002)
    seqs = [int(m) for m in re.findall(r"icmp_seq=(\d+)", output)]
    assert len(seqs) >= 290, f"only {len(seqs)} of 300 replies"
    overtaken = sum(1 for earlier, later in zip(seqs, seqs[1:]) if later < earlier)
    assert overtaken == 0, f"{overtaken} replies arrived out of order: {seqs[:60]} ..."


# -- netem's pitfalls, on the real qdisc inside a lab --------------------------------


@pytest.fixture
def netem_lab(netem_works, lab_factory):
    """A pair lab with the netem backend (skips, with the reason, where netem is missing)."""
    def make(name, link):
        return lab_factory.create("pair", name=name, backend="netem", links={"link": link})
    return make


def _wire_netem(lab, port):
    found = [q for q in helpers.tc_qdiscs(f"tb.{lab.name}._w0", port) if q.get("kind") == "netem"]
    assert len(found) == 1, f"expected one netem qdisc on {port}: {found}"
    return found[0]["options"]


def test_netem_limit_covers_the_bdp_not_the_1000_packet_default(netem_lab):
    # 10 Gbit/s and 50 ms each way hold ~83000 full-size packets in flight: netem's
    # default limit of 1000 would drop most of a window as "queue full"
    lab = netem_lab("it-nm-bdp", {"rate": "10Gbit", "delay": "50ms"})
    bdp_pkts = 10e9 * 0.100 / 8 / 1500
    for port in ("port-a", "port-b"):
        assert _wire_netem(lab, port)["limit"] >= bdp_pkts, port


def test_rate_with_delay_and_both_directions_shaped_at_egress(netem_lab):
    # netem acts on egress only: each direction gets its own netem on the wire port
    # it leaves by, under htb's rate (netem's own rate would serialise behind its
    # delay queue). Goodput at the rate, RTT at twice the delay.
    rate_bps, delay_ms = 20_000_000, 20.0
    lab = netem_lab("it-nm-rated", {"rate": "20Mbit", "delay": f"{delay_ms:g}ms"})
    for port in ("port-a", "port-b"):
        assert _wire_netem(lab, port)["delay"]["delay"] == pytest.approx(delay_ms / 1000, abs=1e-6)
    h1, h2 = lab.node("h1"), lab.node("h2")
    from testbed.measure import RUNNERS

    ping = RUNNERS["ping"].run(h1, h2, count=20, interval_s=0.05, timeout_s=2.0)
    assert min(ping["samples_ms"]) >= 2 * delay_ms, ping["samples_ms"]  # both ways delayed
    expected = rate_bps * (1500 - 52) / (1500 + 14) / 1e6

    def measure():
        result = RUNNERS["tcp"].run(h1, h2, duration_s=6.0)
        return result["throughput_mbps"], f"({result['retransmits']} retransmits)"

    helpers.judge_repeated("TCP goodput at 20 Mbit/s with 20 ms netem delay", measure, expected,
                           expected * 0.85, expected * 1.05, unit=" Mbit/s")
