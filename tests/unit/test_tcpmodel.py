"""The TCP bound (testbed.tcpmodel), worked by hand, and where the model and the fidelity check use it.

Every expected figure below is computed by hand in the comment beside it.
"""

from __future__ import annotations

import math

import pytest

from testbed.lab.paths import l3_path, path_profile
from testbed import fidelity, tcpmodel
from testbed.collectives import bench, model
from testbed.errors import InputError
from testbed.lab.plan import make_plan
from testbed.tcpmodel import HostTcp
from testbed.topologies import build_topology

MiB = 1024 * 1024


def test_mathis_transit():
    # MSS 1448 B, RTT 50 ms, p = 0.25 %: 1448 x 8 / 0.05 = 231680 bit/s per window of 1 MSS;
    # x 1.22 / sqrt(0.0025) = x 24.4 -> 5,652,992 bit/s
    assert tcpmodel.mathis_bps(1448, 0.05, 0.0025) == pytest.approx(5_652_992)
    assert tcpmodel.loss_bound_bps(1448, 0.05, 0.0025) == pytest.approx(5_652_992)


def test_padhye_where_loss_is_high():
    # p = 2 %, RTT 50 ms, T0 = 0.05 + 0.2 = 0.25 s, MSS 1448 (11584 bits):
    # RTT sqrt(2p/3) = 0.05 x 0.1154701 = 0.00577350
    # 3 sqrt(3p/8) = 3 x 0.0866025 = 0.2598076; p (1 + 32 p^2) = 0.02 x 1.0128 = 0.020256
    # T0 term = 0.25 x 0.2598076 x 0.020256 = 0.00131566; sum 0.00708916 -> 1,634,044 bit/s
    assert tcpmodel.padhye_bps(1448, 0.05, 0.02) == pytest.approx(1_634_044, rel=1e-5)
    assert tcpmodel.loss_bound_bps(1448, 0.05, 0.02) == pytest.approx(1_634_044, rel=1e-5)
    # below the threshold Padhye is within a few % of Mathis (the timeouts barely count)
    assert tcpmodel.padhye_bps(1448, 0.05, 0.0025) == pytest.approx(5_652_992, rel=0.03)


def test_window_from_sysctls():
    host = HostTcp.from_sysctls({"net.ipv4.tcp_rmem": "4096 131072 6291456",
                                 "net.ipv4.tcp_wmem": "4096 16384 4194304"})
    # half of the smaller buffer (4 MiB): 2 MiB; over 20 ms: 2097152 x 8 / 0.02 = 838,860,800
    assert host.window_bytes() == 2 * MiB
    assert tcpmodel.window_bound_bps(host.window_bytes(), 0.02) == pytest.approx(838_860_800)
    # an application window (a collective's buffsize) below that wins: 1 MiB -> 419,430,400
    assert host.window_bytes(1 * MiB) == 1 * MiB
    assert host.congestion == "cubic" and host.slow_start_after_idle
    assert not HostTcp.from_sysctls({"net.ipv4.tcp_slow_start_after_idle": "0"}).slow_start_after_idle
    assert HostTcp.from_sysctls({}, congestion="bbr").congestion == "bbr"
    with pytest.raises(InputError):
        HostTcp.from_sysctls({"net.ipv4.tcp_rmem": "lots"})


def test_bound_picks_the_smallest_term():
    cubic = HostTcp(congestion="cubic")
    # transit: 1 Gbit/s, RTT 50 ms, 0.25 % loss, MTU 1500: loss 5.65 Mbit/s < window 335.5 Mbit/s
    b = tcpmodel.tcp_bound(1e9, 50.0, 0.25, 1500, cubic)
    assert (b.limit, b.rate_bps) == ("loss", pytest.approx(5_652_992))
    assert b.window_bps == pytest.approx(2 * MiB * 8 / 0.05)
    # two connections carry twice the loss bound
    assert tcpmodel.tcp_bound(1e9, 50.0, 0.25, 1500, cubic, 2).rate_bps == pytest.approx(2 * 5_652_992)
    # BBR does not back off on random loss: the window (2 MiB / 50 ms = 335,544,320) is the limit
    b = tcpmodel.tcp_bound(1e9, 50.0, 0.25, 1500, HostTcp(congestion="bbr"))
    assert (b.limit, b.loss_bps, b.rate_bps) == ("window", None, pytest.approx(335_544_320))
    # no loss, short RTT: the link
    assert tcpmodel.tcp_bound(1e9, 2.0, 0.0, 1500, cubic).limit == "link"
    # unshaped, no delay: nothing bounds it
    with pytest.raises(InputError):
        tcpmodel.tcp_bound(None, 0.0, 0.0, 1500, cubic)


def test_slow_start():
    # 10 MB at 1 Gbit/s, RTT 10 ms (BDP 1.25 MB), MSS 1000, IW 10 segments: windows of
    # 10k, 20k, ..., 640k B in 7 round trips carry 1.27 MB before the window (1.28 MB)
    # holds the BDP: 7 x 10 ms - 1.27 MB at 1 Gbit/s (10.16 ms) = 59.84 ms more
    assert tcpmodel.slow_start_us(10e6, 1e9, 10.0, 1000) == pytest.approx(59_840)
    # 25 kB: one round of 10 kB, then the next window (20 kB) holds the rest: 10 ms - 80 us
    assert tcpmodel.slow_start_us(25e3, 1e9, 10.0, 1000) == pytest.approx(9_920)
    assert tcpmodel.slow_start_us(10e6, 1e9, 0.0, 1000) == 0.0


def _transit_plan():
    topo = build_topology("two-clouds", {"hosts_per_site": 2, "path": "transit"})
    return make_plan(topo, "unit-tcp", "10.200.0.0/16", {})


def test_fidelity_judges_transit_tcp_against_the_loss_bound():
    plan = _transit_plan()
    pred = path_profile(plan, l3_path(plan, "cw-h1", "gcp-h1"))
    variant = {"tcp": {"throughput_mbps": 6.9, "streams": 1, "congestion": "cubic"}}
    tol = {"rtt_tolerance_pct": 10, "throughput_tolerance_pct": 15, "jitter_tolerance_pct": 30}
    check = next(c for c in fidelity.checks(pred, variant, tol) if c["metric"] == "tcp_throughput_mbps")
    # 5 hops of 0.05 %: p = 1 - 0.9995^5 = 0.24975 %; RTT 50 ms: Mathis 5.6566 Mbit/s
    assert check["configured"] == pytest.approx(5.66, abs=0.01)
    assert check["verdict"] == "pass" and "loss bound" in check["detail"]
    # the 956 Mbit/s link bound is still what "more than the links allow" means
    variant["tcp"]["throughput_mbps"] = 1200.0
    check = next(c for c in fidelity.checks(pred, variant, tol) if c["metric"] == "tcp_throughput_mbps")
    assert check["verdict"] == "fail"


def test_collective_model_uses_the_same_bound(monkeypatch):
    """Over transit the WAN edges carry the loss bound, not 1 Gbit/s."""
    plan = _transit_plan()
    host = HostTcp(congestion="cubic")
    path = bench.path_tcp(plan, "cw-h1", "gcp-h1", host, connections=1, app_window_bytes=4 * MiB)
    pred = path_profile(plan, l3_path(plan, "cw-h1", "gcp-h1"))
    same = fidelity.tcp_prediction(pred, pred["rtt_ms"], None, {}, 1, "cubic")
    assert path.bound.limit == "loss" and path.bound.rate_bps == pytest.approx(same.rate_bps)
    # a ring edge crossing the WAN: max(c x b_link, b_tcp) = 8 / 5.6566 Mbit/s in us per byte
    local, wan = (0.0, 0.0), (25000.0, 0.008)
    edges = model.ring_edge_params([0, 1, 2, 3], [[0, 1], [2, 3]], local, wan,
                                   wan_floor_beta=path.beta_us_per_byte)
    assert edges[1] == (25000.0, pytest.approx(8e6 / same.rate_bps))
    assert edges[0] == (0.0, 0.0)


class _SweepLab:
    """What run_sweep reads of a lab: ``plan``, by default a star of 4 hosts at 1 Gbit/s,
    5 ms per link."""

    def __init__(self, plan=None):
        self.plan = plan or make_plan(build_topology("star", {"hosts": 4}), "unit-star", "10.200.0.0/16",
                                      {"fabric": {"rate": "1Gbit", "delay": "5ms"}})
        self.doc = {"plan": self.plan.to_dict()}
        self.scale = 1.0

    def node(self, name):
        from testbed.lab.node import Node

        info = self.doc["plan"]["nodes"][name]
        return Node(name=name, netns=info["netns"], ip=info["ip"], role=info["role"],
                    site=info["site"], intfs=())

    def hosts(self):
        nodes = self.doc["plan"]["nodes"]
        return [self.node(n) for n in sorted(nodes) if nodes[n]["role"] == "host"]


class _Engine:
    def __init__(self, nodes, rank_host, **_kw):
        pass

    def run(self, schedule, inputs, warmup=1, iters=5):
        from testbed.collectives.reference import execute

        return {"times_s": [2.0] * iters, "outputs": execute(schedule, inputs), "cpu_s": 0.1}

    def bytes_by_pair(self):
        return {}

    def close(self):
        pass


def test_rows_name_the_tcp_limited_path(monkeypatch):
    """4 MiB send buffers over RTT 20 ms: the window (2 MiB / 20 ms = 838.9 Mbit/s) is below
    the 1 Gbit/s link, so b = 8 / 838.9e6 s per byte and the row says the local path is
    TCP-limited. 128 MiB ring allreduce over 4 ranks: 2 x 3/4 x 134217728 B x 8 /
    838860800 bit/s = 1.92 s, plus 6 x 10 ms of latency at most: 1.92-1.98 s."""
    monkeypatch.setattr(bench, "CollectiveEngine", _Engine)
    monkeypatch.setattr(bench, "host_tcp", lambda node, cc=None: HostTcp.from_sysctls(
        {"net.ipv4.tcp_rmem": "4096 131072 33554432", "net.ipv4.tcp_wmem": "4096 16384 4194304"}))
    row = bench.run_sweep(_SweepLab(), "allreduce", "ring", [128 * MiB], iters=1)[0]
    assert row["tcp_limited"] == ["local"] and row["tcp"]["local"]["limit"] == "window"
    assert 1.92e6 <= row["model_time_us"] <= 1.98e6


def test_binomial_interval_by_hand():
    # n = 4, p = 0.5: pmf 1/16, 4/16, 6/16, 4/16, 1/16; the central 99 % needs 0..4
    assert fidelity.binomial_interval(4, 0.5) == (0, 4)
    # n = 100, p = 0: nothing can be lost
    assert fidelity.binomial_interval(100, 0.0) == (0, 0)


def test_ping_loss_and_rtt_notes():
    plan = _transit_plan()
    pred = path_profile(plan, l3_path(plan, "cw-h1", "gcp-h1"))
    # both ways 0.24975 %: a round trip loses 1 - 0.9975^2 ~ 0.499 %; 100 pings: 0-3 lost is normal
    tol = {"rtt_tolerance_pct": 10, "throughput_tolerance_pct": 15, "jitter_tolerance_pct": 30}
    ping = {"sent": 100, "received": 99, "rtt_ms": {"mean": 4.71, "p50": 50.2}}
    by_metric = {c["metric"]: c for c in fidelity.checks(pred, {"ping": ping}, tol)}
    assert by_metric["ping_loss_pct"]["verdict"] == "pass"
    assert "binomial interval" in by_metric["ping_loss_pct"]["detail"]
    ping["received"] = 80
    by_metric = {c["metric"]: c for c in fidelity.checks(pred, {"ping": ping}, tol)}
    assert by_metric["ping_loss_pct"]["verdict"] == "warn"
    # a fail says the rule (mean) and the p50
    assert by_metric["rtt_ms"]["verdict"] == "fail"
    assert "mean" in by_metric["rtt_ms"]["detail"] and "p50 50.200" in by_metric["rtt_ms"]["detail"]


# ------------------------------------------------------- window advisory (issue 17, item 4)


def test_window_advisory_on_a_long_fat_pair_with_default_buffers():
    """10 Gbit/s x 80 ms with a new namespace's defaults: about 300 Mbit/s per connection."""
    from testbed.window_advisory import advisories

    topo = build_topology("pair", {})
    plan = make_plan(topo, "adv", "10.200.0.0/16", {"link": {"rate": "10Gbit", "delay": "40ms"}})
    (line,) = advisories(plan, {"h1": {}}.get)
    # defaults: min(6291456, 4194304) / 2 = 2 MiB per connection; 2 MiB x 8 / 80 ms = 209.7 Mbit/s
    assert "h1 -> h2" in line and "near 210 Mbit/s" in line and "95.4 MiB in flight" in line
    assert advisories(plan, {"h1": {"net.ipv4.tcp_rmem": "4096 131072 268435456",
                                    "net.ipv4.tcp_wmem": "4096 16384 268435456"}}.get) == []


def test_no_window_advisory_where_the_window_fills_the_path():
    from testbed.window_advisory import advisories

    plan = make_plan(build_topology("pair", {}), "adv", "10.200.0.0/16",
                     {"link": {"rate": "100Mbit", "delay": "10ms"}})
    assert advisories(plan, {}.get) == []


def test_loss_recovery_by_hand():
    """1 MiB in one 4 MiB window at 1 % loss: 725 segments, P(a loss) = 1 - 0.99^725 =
    0.99931, 1.25 round trips of 40 ms each: 49.97 ms. 16 MiB: four windows, each all but
    sure to lose one: 4 x 50 ms."""
    assert tcpmodel.loss_recovery_us(MiB, 40.0, 1.0, 1448, 4 * MiB) == pytest.approx(
        (1 - 0.99 ** 725) * 1.25 * 40_000)
    assert tcpmodel.loss_recovery_us(16 * MiB, 40.0, 1.0, 1448, 4 * MiB) == pytest.approx(
        200_000, rel=1e-6)
    # 64 KiB at 0.25 %: 46 segments, P = 1 - 0.9975^46 = 10.9 %
    assert tcpmodel.loss_recovery_us(64 * 1024, 50.0, 0.25, 1448, 4 * MiB) == pytest.approx(
        (1 - 0.9975 ** 46) * 1.25 * 50_000)
    assert tcpmodel.loss_recovery_us(MiB, 40.0, 0.0, 1448, 4 * MiB) == 0.0
    assert tcpmodel.loss_recovery_us(MiB, 0.0, 1.0, 1448, 4 * MiB) == 0.0
    with pytest.raises(InputError, match="loss"):
        tcpmodel.loss_recovery_us(MiB, 40.0, 100.0, 1448, 4 * MiB)
    with pytest.raises(InputError, match="window"):
        tcpmodel.loss_recovery_us(MiB, 40.0, 1.0, 1448, 0)


def test_transit_rows_add_loss_recovery_to_the_wan_latency(monkeypatch):
    """sendrecv over transit with BBR (no loss bound): the default buffers hold 2 MiB (half
    of wmem's 4 MiB), a window of 1448.5 segments at 335.5 Mbit/s that loses one with
    probability P = 1 - (1 - 0.0024975)^1448.5 = 97.3 % per round trip, each costing 1.25 x
    50 ms. 4 MiB (two windows): 2 x P x 62.5 ms = 121.6 ms more than without loss, all of it
    in the stalls' beta (factor 1 + 1.25 P), none left for the alpha. 64 KiB (46 segments,
    part of one window): the stalls charge its share of a round, 64 KiB x the stalls' beta,
    and the alpha the rest of its own wait, (1 - (1 - p)^46) x 62.5 ms. With cubic the loss
    bound (5.66 Mbit/s) already takes far longer than the recovery: nothing is added."""
    monkeypatch.setattr(bench, "CollectiveEngine", _Engine)
    sweep = dict(hosts=["cw-h1", "gcp-h1"], iters=1)
    p = 0.0024975
    p_round = 1 - (1 - p) ** 1448.5
    window_beta = 8e6 / (2 * MiB * 8 / 0.05)  # us per byte at 335.5 Mbit/s
    stall_beta = window_beta * 1.25 * p_round
    cases = (("bbr", 4 * MiB, 1 + 1.25 * p_round, 0.0, 2 * p_round * 62_500),
             ("bbr", 64 * 1024, 1 + 1.25 * p_round,
              (1 - (1 - p) ** math.ceil(64 * 1024 / 1448)) * 62_500 - 64 * 1024 * stall_beta,
              (1 - (1 - p) ** math.ceil(64 * 1024 / 1448)) * 62_500),
             ("cubic", 4 * MiB, 1.0, 0.0, 0.0))
    for cc, size, factor, alpha_us, extra_us in cases:
        monkeypatch.setattr(bench, "host_tcp", lambda node, c=None, cc=cc: HostTcp(congestion=cc))
        row = bench.run_sweep(_SweepLab(_transit_plan()), "sendrecv", "ring", [size], **sweep)[0]
        assert row["recovery_stall_factor"] == pytest.approx(factor, rel=1e-3)
        # abs: the stalls count a window's segments unrounded, the message's wait whole ones
        assert row["loss_recovery_us"] == pytest.approx(alpha_us, rel=1e-3, abs=5.0)
        assert "wan" in row["tcp_limited"]  # the window (and for BBR its stalls) or the loss bound
        with monkeypatch.context() as m:
            m.setattr(bench, "wan_loss_recovery_us", lambda *a, **k: 0.0)
            m.setattr(bench, "wan_stall_factor", lambda *a, **k: 1.0)
            without = bench.run_sweep(_SweepLab(_transit_plan()), "sendrecv", "ring", [size], **sweep)[0]
        assert row["model_time_us"] - without["model_time_us"] == pytest.approx(extra_us, rel=1e-3, abs=5.0)


def test_recovery_stall_factor_by_hand():
    """Window-limited (window / rate = RTT): 1 + 1.25 P. A window that covers 2.25 RTT at the
    rate: no stall. Between: the part of the 2.25 RTT the window cannot cover."""
    p_round = 1 - (1 - 0.01) ** (100e6 * 0.04 / 8 / 1448)  # 100 Mbit/s x 40 ms at 1 %
    assert tcpmodel.recovery_stall_factor(1e9, 100e6, 1, 40.0, 1.0, 1448) == pytest.approx(
        1 + 1.25 * p_round)
    assert tcpmodel.recovery_stall_factor(100e6, 225e6, 1, 40.0, 1.0, 1448) == pytest.approx(1.0)
    # window 2 RTT at the rate: stalls 0.25 RTT per lossy round trip
    assert tcpmodel.recovery_stall_factor(100e6, 200e6, 1, 40.0, 1.0, 1448) == pytest.approx(
        1 + 0.25 * p_round)
    # two connections share the rate and the window: the same factor
    assert tcpmodel.recovery_stall_factor(200e6, 400e6, 2, 40.0, 1.0, 1448) == pytest.approx(
        1 + 0.25 * p_round)
    assert tcpmodel.recovery_stall_factor(1e9, 100e6, 1, 40.0, 0.0, 1448) == 1.0
    assert tcpmodel.recovery_stall_factor(1e9, 100e6, 1, 0.0, 1.0, 1448) == 1.0
    with pytest.raises(InputError, match="loss"):
        tcpmodel.recovery_stall_factor(1e9, 100e6, 1, 40.0, 100.0, 1448)
    with pytest.raises(InputError, match="rate"):
        tcpmodel.recovery_stall_factor(1e9, 0.0, 1, 40.0, 1.0, 1448)