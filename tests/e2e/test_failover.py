"""scenarios/failover.yaml end to end (--quick), judged from results.json (issue 8 section 6)."""

import os

import pytest


import helpers  # tests/helpers.py, on the path through tests/conftest.py

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("failover")
    return helpers.run_quick(out, "failover")


def _timeline(doc, name):
    return helpers.variant(doc, name)["timeline"]


def test_complete_and_valid(run):
    _, doc, proc = run
    helpers.assert_complete_and_valid(doc, proc)
    assert all(v["timeline"]["restored"] for v in doc["variants"])


def test_throughput_recovers_after_the_direct_link_goes_down_and_routing_fails_over(run):
    _, doc, _ = run
    data = _timeline(doc, "cut-then-failover")
    cut, failover = (next(a for a in data["analysis"] if a["kind"] == kind) for kind in ("link_down", "failover"))
    print(f"cut at {cut['actual_s']} s: outage {cut['outage_start_s']}-{cut['outage_end_s']} s; "
          f"failover at {failover['actual_s']} s, recovered after {failover['time_to_recover_s']} s, "
          f"throughput {failover['throughput_mbps']}")
    # the outage starts at the cut and ends after the failover, within the step
    assert 2.0 <= cut["outage_start_s"] <= 2.3
    assert 3.0 <= cut["outage_end_s"] <= data["duration_s"]
    assert failover["time_to_recover_s"] is not None
    assert failover["throughput_mbps"]["during"] > 0.3 * 1000  # transit: 1 Gbit/s at real scale
    last = [p["mbps"] for p in data["throughput"] if p["t_s"] >= data["duration_s"] - 1.0]
    assert min(last) > 0, last


def test_cut_and_restore_outage_lies_within_the_schedule(run):
    _, doc, _ = run
    data = _timeline(doc, "cut-and-restore")
    (cut,) = [a for a in data["analysis"] if a["kind"] == "link_down"]
    print(f"outage {cut['outage_s']} s from {cut['outage_start_s']} to {cut['outage_end_s']}, "
          f"recovered after {cut['time_to_recover_s']} s")
    assert 2.0 <= cut["outage_start_s"] <= 2.3
    # TCP resumes after the link is back (its retransmission timer has backed off): within the step
    assert 4.0 <= cut["outage_end_s"] <= data["duration_s"]
    assert cut["time_to_recover_s"] is not None


def test_congestion_raises_rtt_during_the_episode_only(run):
    _, doc, _ = run
    (episode,) = _timeline(doc, "congestion-episode")["analysis"]
    rtt = episode["rtt_ms"]
    print(f"RTT before/during/after: {rtt}")
    assert rtt["during"] > rtt["before"] + 30  # +21 ms each way
    assert rtt["after"] < rtt["before"] + 5


def test_report_and_timeline_plots(run):
    out, _, _ = run
    assert "## Events over time" in (out / "report.md").read_text()
    for name in ("cut-then-failover", "cut-and-restore", "congestion-episode"):
        assert (out / f"timeline_{name}.png").stat().st_size > 1000
