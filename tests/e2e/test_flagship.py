"""The flagship scenario end to end (--quick), judged from results.json."""

import os
import subprocess

import pytest

import helpers  # tests/helpers.py, on the path through tests/conftest.py

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]


@pytest.fixture(scope="module")
def flagship(tmp_path_factory):
    out = tmp_path_factory.mktemp("flagship")
    return helpers.run_quick(out)


def test_results_schema_valid_and_complete(flagship):
    _, doc, proc = flagship
    helpers.assert_complete_and_valid(doc, proc)


def test_direct_rtt_below_transit_by_most_of_configured_difference(flagship):
    _, doc, _ = flagship
    direct, transit = helpers.variant(doc, "direct-interconnect"), helpers.variant(doc, "internet-transit")
    configured = transit["predicted"]["rtt_ms"] - direct["predicted"]["rtt_ms"]
    measured = transit["ping"]["rtt_ms"]["mean"] - direct["ping"]["rtt_ms"]["mean"]
    assert measured >= 0.8 * configured, (measured, configured)


def test_throughput_jitter_hops_mtu(flagship):
    _, doc, _ = flagship
    direct, transit = helpers.variant(doc, "direct-interconnect"), helpers.variant(doc, "internet-transit")
    assert direct["tcp"]["throughput_mbps"] > transit["tcp"]["throughput_mbps"]
    assert transit["owd"]["forward"]["stdev_ms"] > direct["owd"]["forward"]["stdev_ms"]
    assert direct["path"]["hops"] == 1
    assert transit["path"]["hops"] >= 4
    assert direct["path"]["path_mtu"] == 9000
    assert transit["path"]["path_mtu"] == 1500


def test_report_and_plots_written(flagship):
    out, _, _ = flagship
    assert (out / "report.md").read_text().startswith("# Scenario")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 3, pngs
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_draws_each_variants_lab(flagship):
    """Each variant's lab picture, drawn from results.json's lab.graph (the plan the run built)."""
    out, doc, _ = flagship
    report = (out / "report.md").read_text()
    for variant in doc["variants"]:
        graph = variant["lab"]["graph"]
        assert len(graph["nodes"]) == variant["lab"]["nodes"]
        assert {l["name"] for l in graph["links"]} == set(variant["links"])
        assert f"(lab_{variant['name']}.png)" in report
        assert (out / f"lab_{variant['name']}.png").read_bytes()[:4] == b"\x89PNG"


def test_no_lab_left_behind(flagship):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           timeout=10).stdout
    assert "tb.run" not in names, names
