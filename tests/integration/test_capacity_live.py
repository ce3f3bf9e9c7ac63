"""measure_capacity on this machine: a short real run through pair labs ``it-cap-*``.

Oracles: ``ip netns list`` (no ``tb.it-cap`` namespace left afterwards) and the
figures' own consistency (the line carries traffic but no more than a raw veth
could, give or take noise; the userspace backend reports its lateness).
"""

from __future__ import annotations

import subprocess

import pytest

from testbed import capacity

pytestmark = pytest.mark.integration

SECONDS = 2


def _it_cap_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("tb.it-cap")]


def test_measure_capacity_reports_line_and_raw_rates_and_cleans_up():
    doc = capacity.measure_capacity(seconds=SECONDS, name="it-cap")
    try:
        assert doc["schema"] == capacity.SCHEMA
        assert doc["machine"] == capacity.machine_fingerprint()
        line, raw = doc["delay_line_bps"], doc["raw_veth_bps"]
        # Any working line carries far more than 50 Mbit/s of TCP at 40 ms RTT here.
        assert line > 50e6, f"delay line carried only {line / 1e6:.1f} Mbit/s"
        assert raw > 50e6, f"raw veth carried only {raw / 1e6:.1f} Mbit/s"
        # A delayed link cannot beat a plain veth by much (both measured in this run).
        assert line < 1.5 * raw, f"line {line / 1e9:.2f} Gbit/s vs raw {raw / 1e9:.2f} Gbit/s"
        if doc["backend"] == "userspace":
            assert isinstance(doc["late_p99_ms"], (int, float)) and doc["late_p99_ms"] >= 0
            assert doc["cpu_s_per_gb"] is not None and doc["cpu_s_per_gb"] > 0
        # The warning logic applied to the real figures
        assert capacity.check_scenario_capacity(int(0.5 * line), doc) is None
        assert capacity.check_scenario_capacity(int(2 * line), doc) is not None
    finally:
        left = _it_cap_namespaces()
    assert left == [], f"namespaces left behind: {left}"


def test_measure_lines_sends_packets_of_one_mtu_and_cleans_up(monkeypatch):
    """The hosts of the bench's star build packets of one MTU (read back from the kernel
    while the lab is up), the point says so, and the lab is gone afterwards."""
    from pyroute2 import NetNS

    seen = []
    real = capacity._cap_host_gso

    def cap_and_read(lab, gso_bytes):
        real(lab, gso_bytes)
        for node in lab.plan.hosts():
            with NetNS(node.netns) as ns:
                for intf in node.intfs:
                    link = ns.get_links(ifname=intf.name)[0]
                    seen.append(link.get_attr("IFLA_GSO_MAX_SIZE"))

    monkeypatch.setattr(capacity, "_cap_host_gso", cap_and_read)
    try:
        points = capacity.measure_lines(seconds=1, name="it-cap", flows=(1,), mtus=(1500,))
    finally:
        left = _it_cap_namespaces()
    assert left == [], f"namespaces left behind: {left}"
    assert seen == [1500, 1500], seen  # both hosts of the one flow
    (point,) = points
    assert (point["lines"], point["mtu"], point["gso_bytes"], point["flows"]) == (2, 1500, 1500, 1)
    # a working line carries far more than 20 Mbit/s of MTU packets here, and a veth no more
    # than a few tens of Gbit/s
    assert 20e6 < point["total_bps"] < 100e9, point
