"""The flagship scenario end to end (--quick), judged from results.json.

The RTT difference is judged against the scenario's configured links, computed
here from scenarios/direct-vs-transit.yaml and testbed/data/presets.yaml (read
with yaml.safe_load), not against the ``predicted`` figures the run writes.
"""

import os
import re
import subprocess

import pytest
import yaml

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


FLAGSHIP = helpers.REPO_ROOT / "scenarios" / "direct-vs-transit.yaml"
PRESETS = helpers.REPO_ROOT / "testbed" / "data" / "presets.yaml"


def _delay_ms(text) -> float:
    """A preset's one-way delay ("5ms", "20us", "1s"; none: 0)."""
    if text is None:
        return 0.0
    number, unit = re.fullmatch(r"([0-9.]+)\s*(us|ms|s)", str(text)).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _configured_rtt_ms(scenario: dict, presets: dict, path: str) -> float:
    """Twice the one-way delay of every link from src to dst on ``path``.

    topologies/two_clouds.py: each host reaches its edge router through two
    site-fabric links (host - switch - router), so four on the way; then one
    ``direct`` link, or ``transit_hops`` routers joined by transit_hops + 1
    ``transit-hop`` links. Each link's profile is the preset the scenario's
    ``links:`` names (a preset is one hop in one direction, both directions alike).
    """
    delay = {link: _delay_ms(presets[preset].get("delay")) for link, preset in scenario["links"].items()}
    crossing = ([delay["direct"]] if path == "direct"
                else [delay["transit-hop"]] * (scenario["params"]["transit_hops"] + 1))
    return 2.0 * (4 * delay["site-fabric"] + sum(crossing))


def test_transit_rtt_exceeds_direct_by_the_configured_difference(flagship):
    """Mean ping RTT, transit minus direct, within the scenario's rtt tolerance of the
    configured links' difference (2 x (5 x 5 ms - 1 ms) = 48 ms), on both sides."""
    _, doc, _ = flagship
    scenario = yaml.safe_load(FLAGSHIP.read_text())
    presets = yaml.safe_load(PRESETS.read_text())
    by_path = {v["params"]["path"]: v["name"] for v in scenario["variants"]}
    configured = (_configured_rtt_ms(scenario, presets, "transit")
                  - _configured_rtt_ms(scenario, presets, "direct"))
    tolerance = scenario["fidelity"]["rtt_tolerance_pct"] / 100.0
    low, high = configured * (1 - tolerance), configured * (1 + tolerance)
    direct, transit = helpers.variant(doc, by_path["direct"]), helpers.variant(doc, by_path["transit"])
    measured = transit["ping"]["rtt_ms"]["mean"] - direct["ping"]["rtt_ms"]["mean"]
    print(f"RTT transit - direct: configured {configured:.2f} ms, measured {measured:.2f} ms, "
          f"bounds [{low:.2f}, {high:.2f}] ms")
    assert low <= measured <= high, (
        f"measured {measured:.2f} ms, configured {configured:.2f} ms, bounds [{low:.2f}, {high:.2f}]")


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
