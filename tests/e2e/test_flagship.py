"""The flagship scenario end to end (--quick), judged from results.json.

The RTT difference is judged against the scenario's configured links, computed
here from scenarios/direct-vs-transit.yaml and testbed/data/presets.yaml (read
with yaml.safe_load), not against the ``predicted`` figures the run writes.
"""

import math
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
def flagship_run(tmp_path_factory):
    """``testbed run --quick``, and how late this machine woke a sleeper meanwhile
    (helpers.WakeupLateness): each netem or delay-line element releases packets that late."""
    out = tmp_path_factory.mktemp("flagship")
    with helpers.WakeupLateness() as late:
        ran = helpers.run_quick(out)
    return (*ran, late)


@pytest.fixture(scope="module")
def flagship(flagship_run):
    return flagship_run[:3]


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


def test_transit_rtt_exceeds_direct_by_the_configured_difference(flagship_run):
    """Mean ping RTT, transit minus direct, within the scenario's rtt tolerance of the
    configured links' difference (2 x (5 x 5 ms - 1 ms) = 48 ms), on both sides.

    Upward also what this machine adds, measured during the run: the transit path
    crosses 2 x transit_hops more delay elements per round trip than the direct one,
    each releasing as late as the machine wakes a timer at a random moment
    (helpers.WakeupLateness.at_random_time_ms), plus three standard errors of the
    difference of two ping means from that lateness's spread. On hardware that is
    hundredths of a millisecond and the scenario's tolerance alone stands."""
    _, doc, _, late = flagship_run
    scenario = yaml.safe_load(FLAGSHIP.read_text())
    presets = yaml.safe_load(PRESETS.read_text())
    by_path = {v["params"]["path"]: v["name"] for v in scenario["variants"]}
    configured = (_configured_rtt_ms(scenario, presets, "transit")
                  - _configured_rtt_ms(scenario, presets, "direct"))
    tolerance = scenario["fidelity"]["rtt_tolerance_pct"] / 100.0
    direct, transit = helpers.variant(doc, by_path["direct"]), helpers.variant(doc, by_path["transit"])
    extra_elements = 2 * scenario["params"]["transit_hops"]
    late_ms = late.at_random_time_ms()[0]
    # each mean's standard error from the lateness spread of its elements per round trip
    errors = [late.mean_error_ms(elements, v["ping"]["rtt_ms"]["count"])
              for elements, v in ((2, direct), (2 + extra_elements, transit))]
    chance_ms = 3.0 * math.hypot(*errors)
    machine_ms = extra_elements * late_ms + chance_ms
    low, high = configured * (1 - tolerance), configured * (1 + tolerance) + machine_ms
    measured = transit["ping"]["rtt_ms"]["mean"] - direct["ping"]["rtt_ms"]["mean"]
    print(f"RTT transit - direct: configured {configured:.2f} ms, measured {measured:.2f} ms, "
          f"bounds [{low:.2f}, {high:.2f}] ms (machine: {machine_ms:.2f} ms; {late})")
    assert low <= measured <= high, (
        f"measured {measured:.2f} ms, configured {configured:.2f} ms, bounds [{low:.2f}, {high:.2f}]"
        f" ms: the scenario's {tolerance:.0%} and upward {machine_ms:.2f} ms for {extra_elements} "
        f"more delay elements per round trip on a machine whose {late}")


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
