"""scale: auto (testbed.autoscale) and the per-row verdict (testbed.collectives.verdict), without a lab.

Loads are worked by hand from the plans; capacities are stand-in documents.
"""

from __future__ import annotations

import pytest

from testbed import autoscale, capacity
from testbed.collectives import verdict
from testbed.tcpmodel import HostTcp

BIG = HostTcp(rmem_max_bytes=1 << 30, wmem_max_bytes=1 << 30, congestion="cubic")
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
    # 16 Gbit/s / K <= 0.15 x 3 Gbit/s = 0.45 Gbit/s: K >= 35.6 -> 50 among the candidates
    assert autoscale.MARGIN == 0.15
    assert d.scale == 50 and d.mode == "auto" and d.enough
    assert "16 delay lines" in d.reason and "3.00 Gbit/s" in d.reason


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
    d = autoscale.choose_scale(load, _cap, autoscale.physics_reason(["collective"], False, load))
    assert d.scale == 1 and "loss bound" in d.reason
    assert "RTT probes" in autoscale.physics_reason(["ping", "collective"], False, None)
    assert "lossy" in autoscale.physics_reason(["tcp"], True, None)
    assert autoscale.physics_reason(["collective"], False, autoscale.Load(4, 1e9, 1e9)) is None


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


def test_the_flagship_is_never_auto_scaled():
    """Its variants measure RTT, one-way delay and jitter: K = 1, no capacity needed."""
    from testbed.runner import resolve_scenario
    from testbed.scenario import load_scenario
    from testbed.topologies import TOPOLOGIES

    scenario = load_scenario(resolve_scenario(None), topologies=set(TOPOLOGIES))
    assert scenario.scale == "auto"
    for index in range(len(scenario.variants)):
        d = autoscale.for_variant(scenario, index)
        assert (d.scale, d.mode) == (1.0, "auto") and "RTT probes" in d.reason


def test_capacity_warnings_count_only_the_variants_own_links(monkeypatch):
    """The flagship's transit variant has no direct link: its 10 Gbit/s must not warn there."""
    from testbed import runner
    from testbed.scenario import load_scenario
    from testbed.topologies import TOPOLOGIES

    doc = {"backend": "userspace", "delay_line_bps": 2e9, "machine": {"cpus": 2}, "measured_at": "now"}
    monkeypatch.setattr(capacity, "load_cached", lambda *a, **k: doc)
    scenario = load_scenario(runner.resolve_scenario(None), topologies=set(TOPOLOGIES))
    warnings = runner._capacity_warnings(scenario)
    assert [w.split(":")[0] for w in warnings] == ["direct-interconnect"], warnings
