"""scale: auto (testbed.autoscale) and the per-row verdict (testbed.collectives.verdict), without a lab.

Loads are worked by hand from the plans; capacities are stand-in documents.
"""

from __future__ import annotations

import pytest

from testbed import autoscale, capacity
from testbed.collectives import verdict
from testbed.tcpmodel import HostTcp

BIG = HostTcp(rmem_max_bytes=1 << 30, wmem_max_bytes=1 << 30, congestion="cubic")
BIG_SYSCTLS = {"net.ipv4.tcp_rmem": "4096 131072 1073741824", "net.ipv4.tcp_wmem": "4096 16384 1073741824"}
# what the lines carried here, in all, by how many at once (stand-in figures)
CAP = {"lines": [{"lines": 2, "mtu": 1500, "total_bps": 8e9}, {"lines": 8, "mtu": 1500, "total_bps": 4e9},
                 {"lines": 16, "mtu": 1500, "total_bps": 3e9}]}


def _cap(n):
    return capacity.lines_capacity_bps(CAP, n)


def test_star_load_and_the_smallest_k():
    plan = autoscale.plan_for("star", {"hosts": 8}, {"fabric": {"rate": "1Gbit", "delay": "5ms"}})
    load = autoscale.estimate_load(plan, host=BIG)
    # 8 hosts, one link each, both directions carry ring traffic: 16 lines at 1 Gbit/s
    assert (load.lines, load.total_bps, load.max_line_bps) == (16, 16e9, 1e9)
    d = autoscale.choose_scale(load, _cap)
    # 16 Gbit/s / K <= 0.12 x 3 Gbit/s = 0.36 Gbit/s: K >= 44.4 -> 50 among the candidates
    assert autoscale.MARGIN == 0.12
    assert d.scale == 50 and d.mode == "auto" and d.enough
    assert "16 delay lines" in d.reason and "3.00 Gbit/s" in d.reason


def test_capacity_is_read_at_the_labs_mtu():
    """A star's fabric has MTU 9000: its lines carry 9000-byte packets, which cost far fewer
    packets per bit than 1500-byte ones, so K comes from the MTU 9000 figures."""
    doc = {"lines": [{"lines": 16, "mtu": 1500, "gso_bytes": 1500, "total_bps": 1.5e9},
                     {"lines": 16, "mtu": 9000, "gso_bytes": 9000, "total_bps": 7e9}]}
    star = autoscale.plan_for("star", {"hosts": 8}, {"fabric": {"rate": "1Gbit", "delay": "5ms"}})
    d = autoscale.decide("auto", star, capacity_doc=doc, host_sysctls=BIG_SYSCTLS)
    # 16 Gbit/s / K <= 0.12 x 7 Gbit/s = 0.84: K >= 19.0 -> 20
    assert d.scale == 20 and d.capacity_bps == 7e9 and "in MTU packets" in d.reason
    small = autoscale.plan_for("star", {"hosts": 8}, {"fabric": {"rate": "1Gbit", "delay": "5ms",
                                                                 "mtu": 1500}})
    d = autoscale.decide("auto", small, capacity_doc=doc, host_sysctls=BIG_SYSCTLS)
    # 16 Gbit/s / K <= 0.12 x 1.5 Gbit/s = 0.18: K >= 88.9 -> 100
    assert d.scale == 100 and d.capacity_bps == 1.5e9
    judged = autoscale.decide(20.0, small, capacity_doc=doc, host_sysctls=BIG_SYSCTLS)
    assert judged.enough is False and "ABOVE" in judged.reason


def test_explicit_scale_is_kept_and_judged():
    plan = autoscale.plan_for("star", {"hosts": 16}, {"fabric": {"rate": "5Gbit", "delay": "1ms"}})
    load = autoscale.estimate_load(plan, host=BIG)
    assert load.lines == 32 and load.total_bps == 32 * 5e9
    one = autoscale.explicit(1.0, load, _cap)
    # 160 Gbit/s through 32 lines; beyond 16 lines: 3e9 x 16 / 32 = 1.5 Gbit/s
    assert one.scale == 1.0 and one.enough is False and "ABOVE" in one.reason
    assert autoscale.explicit(1000.0, load, _cap).enough is True


def test_no_auto_scale_where_physics_changes():
    plan = autoscale.plan_for("two-clouds", {"hosts_per_site": 2, "path": "transit"}, {})
    load = autoscale.estimate_load(plan, host=HostTcp(congestion="cubic"))
    assert load.loss_limited  # cubic over 0.25 % loss: Mathis, not the link
    d = autoscale.choose_scale(load, _cap, autoscale.physics_reason(["collective"], load))
    assert d.scale == 1 and "loss on the path" in d.reason
    # BBR has no loss bound, but its losses are still counted in packets: not scaled either
    bbr = autoscale.estimate_load(plan, host=HostTcp(congestion="bbr"))
    assert bbr.loss_limited and "fewer packets" in autoscale.physics_reason(["collective"], bbr)
    assert "events" in autoscale.physics_reason(["timeline", "collective"])
    assert "loss bound" in autoscale.physics_reason(["tcp"], None, [("tcp", "loss")])
    assert autoscale.physics_reason(["ping", "collective"], autoscale.Load(4, 1e9, 1e9)) is None
    # a tcp step over the lossy transit path: its rate is Mathis's, whatever the link
    flow = autoscale.Flow("tcp", "cw-h1", "gcp-h1", cc="cubic")
    load, limit = autoscale.flow_load(plan, flow, HostTcp())
    assert limit == "loss"
    d = autoscale.decide("auto", plan, ["tcp"], flows=[flow], capacity_doc=CAP)
    assert d.scale == 1 and "loss bound" in d.reason


def test_tcp_and_probes_scale_where_physics_allows():
    """The flagship's direct path: lossless, window above the BDP, probes tiny against 1 ms."""
    plan = autoscale.plan_for("two-clouds", {"hosts_per_site": 1, "path": "direct"},
                              {"direct": "direct-interconnect"})
    tcp = autoscale.Flow("tcp", "cw-h1", "gcp-h1")
    load, limit = autoscale.flow_load(plan, tcp, BIG)
    assert limit is None and load.lines == 1 and load.total_bps == 10e9
    ping = autoscale.Probe("ping", "cw-h1", "gcp-h1", 56)
    extra_ms, delay_ms = autoscale.probe_extra_ms(plan, ping, 5)
    assert delay_ms == 1.0 and extra_ms == pytest.approx(4 * 84 * 8 / 10e9 * 1e3)
    d = autoscale.decide("auto", plan, ["ping", "tcp"], flows=[tcp], probes=[ping], capacity_doc=CAP,
                         host_sysctls=BIG_SYSCTLS)
    assert d.scale > 1 and d.load.total_bps == 10e9
    # the same probes on a 10 Mbit/s path: 84 bytes take 67 us there, K times more when scaled
    slow = autoscale.plan_for("two-clouds", {"hosts_per_site": 1, "path": "direct"},
                              {"direct": {"rate": "10Mbit", "delay": "1ms"}})
    assert autoscale.probe_reason(slow, [ping], 2) is not None
    assert autoscale.probe_reason(slow, [ping], 1) is None
    # a window below the BDP: TCP's window, not the link, sets the rate -> never scaled
    small = autoscale.Flow("tcp", "cw-h1", "gcp-h1", window_bytes=256 * 1024)
    assert autoscale.flow_load(plan, small, BIG)[1] == "window"
    d = autoscale.decide("auto", plan, ["tcp"], flows=[small], capacity_doc=CAP, host_sysctls=BIG_SYSCTLS)
    assert d.scale == 1 and "window bound" in d.reason


def test_window_limited_collective_edges_are_not_scaled():
    """A 10 Gbit/s link with a 30 ms RTT: 3 MiB of window carries 0.84 Gbit/s. On links K times
    slower the window would no longer bind, and the bytes (divided by K) would cross K times sooner."""
    plan = autoscale.plan_for("star", {"hosts": 4}, {"fabric": {"rate": "10Gbit", "delay": "7.5ms"}})
    load = autoscale.estimate_load(plan, host=HostTcp(congestion="cubic"))  # kernel-default buffers
    assert load.window_limited and not load.loss_limited
    kernel_defaults = {"net.ipv4.tcp_rmem": "4096 131072 6291456", "net.ipv4.tcp_wmem": "4096 16384 4194304"}
    d = autoscale.decide("auto", plan, ["collective"], capacity_doc=CAP, host_sysctls=kernel_defaults)
    assert d.scale == 1 and "window" in d.reason and d.load.window_limited
    fast = autoscale.plan_for("star", {"hosts": 4}, {"fabric": {"rate": "1Gbit", "delay": "0.5ms"}})
    assert not autoscale.estimate_load(fast, host=HostTcp(congestion="cubic")).window_limited


def _snap(late_bins, received, dropped=0, cpu=(0, 0)):
    return {"lines": {"fabric:forward@h1": {"hist": late_bins, "p99_ms": None, "received": received,
                                             "dropped_queue": dropped}}, "cpu": cpu}


def test_verdict_from_the_rows_own_lateness():
    # bin 80: 1 us x 1.05^80 = 49.6 us; bin 120: 1.05^120 us = 348.9 us; bin 160: 2.4 ms
    before = _snap({"80": 1000}, 1000, cpu=(0, 0))
    on_time = _snap({"80": 2000, "120": 5}, 2005, cpu=(50, 100))
    v = verdict.judge(before, on_time, 0.3)
    assert v["verdict"] == "pass" and v["evidence"]["late_p99_ms"] == pytest.approx(0.0496, abs=1e-3)
    late = _snap({"80": 1000, "160": 1000}, 2000, cpu=(50, 100))
    v = verdict.judge(before, late, 0.3)
    assert v["verdict"] == "warn" and "late" in v["reason"]  # 2.4 ms: above 1, below 5
    dropped = _snap({"80": 2000}, 2000, dropped=7, cpu=(50, 100))
    v = verdict.judge(before, dropped, 0.3)
    assert v["verdict"] == "fail" and "dropped 7 packets" in v["reason"]
    busy = _snap({"80": 2000}, 2000, cpu=(95, 100))
    assert verdict.judge(before, busy, 0.3)["verdict"] == "warn"
    assert verdict.judge(before, on_time, 0.95)["verdict"] == "warn"
    low = verdict.judge(before, on_time, 0.3, scale_enough=False, scale=1.0)
    assert low["verdict"] == "warn" and "scale 1" in low["reason"]


def test_the_flagship_scales_direct_but_not_transit():
    """Direct: 10 Gbit/s of lossless TCP, scaled (probes unchanged); transit: TCP's loss bound."""
    from testbed.runner import resolve_scenario
    from testbed.scenario import load_scenario
    from testbed.topologies import TOPOLOGIES

    scenario = load_scenario(resolve_scenario(None), topologies=set(TOPOLOGIES))
    assert scenario.scale == "auto"
    direct = autoscale.for_variant(scenario, 0, capacity_doc=CAP)
    assert direct.mode == "auto" and direct.scale > 1 and direct.enough
    transit = autoscale.for_variant(scenario, 1, capacity_doc=CAP)
    assert transit.scale == 1 and "loss bound" in transit.reason


def test_capacity_warnings_count_only_the_variants_own_links(monkeypatch):
    """The flagship's transit variant has no direct link: its 10 Gbit/s must not warn there;
    the direct variant is judged at the K it will run at."""
    from testbed import runner
    from testbed.scenario import load_scenario
    from testbed.topologies import TOPOLOGIES

    scenario = load_scenario(runner.resolve_scenario(None), topologies=set(TOPOLOGIES))
    doc = {"backend": "userspace", "delay_line_bps": 2e9, "machine": {"cpus": 2}, "measured_at": "now",
           **CAP}
    monkeypatch.setattr(capacity, "load_cached", lambda *a, **k: doc)
    assert runner._capacity_warnings(scenario) == []  # 10 Gbit/s at K = 25: 0.4 Gbit/s
    doc["delay_line_bps"] = 1e8  # now both warn, direct at the rate its lab is shaped at
    warnings = runner._capacity_warnings(scenario)
    assert [w.split(":")[0] for w in warnings] == ["direct-interconnect", "internet-transit"]
    assert "shaped at 0.40 Gbit/s (scale 25)" in warnings[0] and "scale" not in warnings[1]
