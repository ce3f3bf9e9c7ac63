"""scenarios/burst-training.yaml end to end (--quick), judged from results.json (issue 8 section 6)."""

import os

import pytest


import helpers  # tests/helpers.py, on the path through tests/conftest.py

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("burst")
    return helpers.run_quick(out, "burst-training")


def test_complete_and_valid(run):
    _, doc, proc = run
    helpers.assert_complete_and_valid(doc, proc)


def test_topology_aware_placement_beats_naive_when_a_site_is_behind_transit(run):
    _, doc, _ = run
    placements = helpers.variant(doc, "aws-behind-transit")["training"]["placements"]
    naive, topo = placements["naive"], placements["topology"]
    print(f"step p50: naive {naive['step_ms']['p50']} ms ({naive['ring_crossings']} crossings), "
          f"topology {topo['step_ms']['p50']} ms ({topo['ring_crossings']} crossings)")
    assert topo["ring_crossings"] < naive["ring_crossings"]
    assert topo["step_ms"]["p50"] < naive["step_ms"]["p50"], (naive["step_ms"], topo["step_ms"])
    for p in (naive, topo):
        assert p["wrong"] == 0


def test_straggler_attribution_names_the_transit_link_of_the_site_behind_it(run):
    _, doc, _ = run
    training = helpers.variant(doc, "aws-behind-transit")["training"]
    for placement in training["placements"].values():
        stragglers = placement["stragglers"]
        assert stragglers["bottleneck_link"] in ("cw-aws-transit", "gcp-aws-transit"), stragglers
        assert stragglers["slowest_site"] == "aws"  # A100s against H100s
        for rank in stragglers["by_rank"]:
            assert rank["waited_comm_on"] in ("link cw-aws-transit", "link gcp-aws-transit"), rank
            assert rank["waited_compute_on"].startswith("site aws")


def test_report_has_the_training_section_and_plot(run):
    out, _, _ = run
    text = (out / "report.md").read_text()
    assert "## Training across sites" in text and "Straggler attribution" in text
    assert (out / "training_steps.png").stat().st_size > 1000
