"""scenarios/central-storage.yaml end to end (--quick), judged from results.json (issue 8 section 6)."""

import os

import pytest

from testbed.cost import GIB_BYTES

import helpers  # tests/helpers.py, on the path through tests/conftest.py

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("storage")
    return helpers.run_quick(out, "central-storage")


def _storage(doc, name):
    return helpers.variant(doc, name)["storage"]


def test_complete_and_valid(run):
    _, doc, proc = run
    helpers.assert_complete_and_valid(doc, proc)


@pytest.mark.parametrize("path", ["direct", "transit"])
def test_cache_serves_the_second_epoch_faster_than_no_cache(run, path):
    _, doc, _ = run
    cached, plain = _storage(doc, f"{path}-cache"), _storage(doc, f"{path}-no-cache")
    second, plain_second = cached["epochs"][1], plain["epochs"][1]
    print(f"{path}: epoch 2 with cache p50 {second['latency_p50_ms']} ms, hit ratio {second['hit_ratio']}; "
          f"without {plain_second['latency_p50_ms']} ms")
    assert second["hit_ratio"] > 0.9
    assert second["latency_p50_ms"] < plain_second["latency_p50_ms"]
    assert cached["totals"]["all_verified"] and plain["totals"]["all_verified"]


def test_every_corrupted_answer_is_detected_and_none_accepted(run):
    _, doc, _ = run
    storage = _storage(doc, "transit-cache-corrupt")
    injected = sum(e["corrupt_injected"] for e in storage["epochs"])
    detected = sum(e["corrupt_detected"] for e in storage["epochs"])
    print(f"corrupt answers injected {injected}, detected {detected}")
    assert injected > 0 and detected == injected
    assert storage["totals"]["all_verified"] and all(e["failed_reads"] == 0 for e in storage["epochs"])


def test_egress_cost_is_bytes_times_the_interconnect_price(run):
    _, doc, _ = run
    cost = helpers.variant(doc, "direct-no-cache")["cost"]
    (link,) = [l for l in cost["links"].values() if l["link"] == "direct"]
    assert link["class"] == "interconnect" and link["egress_bytes"] > 2 * 24 * 262144  # two epochs of shards
    assert cost["total_usd"] == pytest.approx(link["egress_bytes"] / GIB_BYTES * 0.02, rel=1e-9)
    monthly = cost["monthly"]
    assert monthly["usd"] == pytest.approx(10e12 * 30 / GIB_BYTES * 0.02, rel=1e-9)


def test_report_has_storage_and_cost_sections(run):
    out, _, _ = run
    text = (out / "report.md").read_text()
    assert "## Central storage reads" in text and "## Egress cost" in text
