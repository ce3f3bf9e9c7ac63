"""Per-link byte counters on a real lab, and the cost of what crossed.

A known amount of traffic (pings of a known size between the lab's two
hosts, inside their namespaces) must move the counters of the link it
crossed by at least its payload and at most its frames plus a little ARP.
Oracle: ``ip -json -s link show`` in the namespace read
(:func:`helpers.ip_json`), never pyroute2 itself.
"""

from __future__ import annotations

import pytest

import helpers
from testbed import cost
from testbed.lab.counters import delta, link_bytes

pytestmark = pytest.mark.integration

PINGS = 5
PAYLOAD_BYTES = 1000
# One echo frame: payload + ICMP header 8 + IPv4 header 20 + Ethernet header 14.
FRAME_BYTES = PAYLOAD_BYTES + 8 + 20 + 14
# Room for what else may cross an idle point-to-point link: ARP requests and
# replies (42-byte frames), a few at most.
SLACK_BYTES = 10 * 64
SLACK_PACKETS = 10


def _ping(lab) -> None:
    h1, h2 = lab.node("h1"), lab.node("h2")
    h1.run(["ping", "-c", str(PINGS), "-i", "0.2", "-W", "2", "-s", str(PAYLOAD_BYTES), h2.ip],
           timeout_s=10)


def _oracle(netns: str, ifname: str, side: str) -> int:
    """``ip -json -s link show IFNAME`` in NETNS: its rx or tx byte count."""
    (entry,) = helpers.ip_json(["-s", "link", "show", ifname], netns)
    return entry["stats64"][side]["bytes"]


def _check_moved(moved: dict) -> None:
    for direction in ("a_to_b", "b_to_a"):
        got_bytes, got_packets = moved[f"{direction}_bytes"], moved[f"{direction}_packets"]
        low, high = PINGS * PAYLOAD_BYTES, PINGS * FRAME_BYTES + SLACK_BYTES
        assert low <= got_bytes <= high, (
            f"{direction}: expected {low}..{high} bytes for {PINGS} pings of "
            f"{PAYLOAD_BYTES} bytes, counted {got_bytes}")
        assert PINGS <= got_packets <= PINGS + SLACK_PACKETS, (
            f"{direction}: expected {PINGS}..{PINGS + SLACK_PACKETS} frames, counted {got_packets}")


def test_shaped_link_counts_both_directions_on_the_wire(lab_factory):
    lab = lab_factory.create("pair", name="it-cnt-wire", links={"link": {"rate": "100Mbit"}})
    (link,) = lab.links()
    assert link["wire"], "a 100Mbit link must run through a wire namespace"
    before = link_bytes(lab)
    _ping(lab)
    after = link_bytes(lab)
    moved = delta(before, after)[link["id"]]
    assert (moved["a"], moved["b"], moved["name"]) == ("h1", "h2", "link")
    _check_moved(moved)
    # the kernel's own tools agree with what we read (the lab is idle now)
    for port, direction in (("port-a", "a_to_b"), ("port-b", "b_to_a")):
        oracle = _oracle(link["wire"], port, "rx")
        ours = after[link["id"]][f"{direction}_bytes"]
        assert ours <= oracle <= ours + SLACK_BYTES, (port, ours, oracle)


def test_unshaped_link_counts_on_the_node_veths(lab_factory):
    lab = lab_factory.create("pair", name="it-cnt-veth", links={"link": {}})
    (link,) = lab.links()
    assert link["wire"] is None, "a link with no rate or impairment is a plain veth"
    before = link_bytes(lab)
    _ping(lab)
    after = link_bytes(lab)
    moved = delta(before, after)[link["id"]]
    _check_moved(moved)
    h1, h2 = lab.node("h1"), lab.node("h2")
    for node, intf, direction in ((h1, link["a_intf"], "a_to_b"), (h2, link["b_intf"], "b_to_a")):
        oracle = _oracle(node.netns, intf, "tx")
        ours = after[link["id"]][f"{direction}_bytes"]
        assert ours <= oracle <= ours + SLACK_BYTES, (intf, ours, oracle)


def test_cost_of_what_crossed(lab_factory):
    """pair's hosts are in sites a and b: both directions are egress, priced as internet."""
    lab = lab_factory.create("pair", name="it-cnt-cost", links={"link": {"rate": "100Mbit"}})
    before = link_bytes(lab)
    _ping(lab)
    moved = delta(before, link_bytes(lab))
    presets = cost.link_presets("pair", {}, {"link": {"rate": "100Mbit"}})
    doc = cost.traffic_cost(moved, presets)
    (entry,) = doc["links"].values()
    crossed = entry["a_to_b_bytes"] + entry["b_to_a_bytes"]
    assert entry["class"] == "internet"
    assert entry["egress_bytes"] == crossed == doc["total_bytes"]
    # flat inside the first tier: bytes x $0.12 per GiB
    assert doc["total_usd"] == pytest.approx(crossed / 2**30 * 0.12)


@pytest.mark.userspace
@pytest.mark.parametrize("engine", ["python", "c"])
def test_delay_line_stats_count_every_packet_the_moment_they_are_read(lab_factory, engine,
                                                                     monkeypatch):
    """A burst shorter than the stats period, read at once: every packet is counted.

    The stats file is written every 0.5 s; read as it is, a burst that fell between
    two writes is missing (a corrupt-link storage run once read 0 corrupted packets
    while the kernel had counted 149 checksum errors). ``Lab.delay_line_stats``
    asks each line to write its counters first. Oracle: ping's own count of
    replies, each of which crossed the line twice (request and reply queue).
    """
    if engine == "c":
        pytest.importorskip("testbed.delayline._fastline", reason="C engine not built")
    import functools

    from testbed.shaping import backends
    from testbed.shaping.netem import NetemBackend
    from testbed.shaping.userspace import UserspaceBackend

    monkeypatch.setattr(backends, "_registry", lambda: {
        "netem": NetemBackend, "userspace": functools.partial(UserspaceBackend, engine=engine)})
    lab = lab_factory.create("pair", name=f"it-flush-{engine[0]}", backend="userspace",
                             links={"link": {"delay": "1ms"}})
    assert [d.get("engine", "python") for d in lab.delay_line_stats()] == [engine]
    h1, h2 = lab.node("h1"), lab.node("h2")
    h1.run(["ping", "-c", "2", "-i", "0.05", "-W", "2", h2.ip], timeout_s=10)  # ARP, warm
    for _ in range(3):
        before = sum(q["received"] for d in lab.delay_line_stats() for q in d["queues"])
        out = h1.run(["ping", "-n", "-c", "20", "-i", "0.005", "-W", "2", h2.ip], timeout_s=10).stdout
        replies = int(out.split(" received")[0].split()[-1])
        after = sum(q["received"] for d in lab.delay_line_stats() for q in d["queues"])
        assert after - before >= 2 * replies, (
            f"{engine} line: stats counted {after - before} packets, ping saw {replies} "
            f"round trips (2 packets each through the line)")
