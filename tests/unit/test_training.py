"""Placement and the pieces of the training step that need no lab."""

import random

import pytest

from testbed.collectives import training
from testbed.collectives.placement import best_site_order, place
from testbed.errors import InputError
from testbed.lab.plan import LabPlan
from testbed.steps.training import TrainingOptions

HOSTS = ["aws-h1", "aws-h2", "cw-h1", "cw-h2", "gcp-h1", "gcp-h2"]
SITE = {h: h.split("-")[0] for h in HOSTS}
# cw-gcp fast, everything with aws slow
COST = {frozenset(("cw", "gcp")): 1.0, frozenset(("cw", "aws")): 10.0, frozenset(("gcp", "aws")): 10.0}


def cost(a, b):
    return COST[frozenset((a, b))]


def test_naive_placement_hands_hosts_out_round_robin_over_sites():
    assert place("naive", HOSTS, SITE, 1, cost) == ["aws-h1", "cw-h1", "gcp-h1", "aws-h2", "cw-h2", "gcp-h2"]


def test_topology_placement_keeps_sites_contiguous_with_gpus_per_host():
    ranks = place("topology", HOSTS, SITE, 2, cost)
    sites = [SITE[h] for h in ranks]
    assert len(ranks) == 12
    changes = sum(1 for i in range(len(sites)) if sites[i] != sites[(i + 1) % len(sites)])
    assert changes == 3  # each site boundary once around the ring


def test_best_site_order_prefers_the_fastest_crossings():
    four = {frozenset(p): c for p, c in [(("a", "b"), 1), (("b", "c"), 1), (("c", "d"), 1), (("d", "a"), 1),
                                          (("a", "c"), 50), (("b", "d"), 50)]}
    order = best_site_order(["a", "c", "b", "d"], lambda x, y: four[frozenset((x, y))])
    edges = [four[frozenset((order[i], order[(i + 1) % 4]))] for i in range(4)]
    assert max(edges) == 1, order


def test_best_site_order_beyond_the_exhaustive_limit_is_greedy_and_complete():
    sites = [f"s{i}" for i in range(9)]
    order = best_site_order(sites, lambda a, b: abs(int(a[1:]) - int(b[1:])))
    assert sorted(order) == sorted(sites) and order[:3] == ["s0", "s1", "s2"]


def test_unknown_placement_is_an_input_error():
    with pytest.raises(InputError) as info:
        place("random", HOSTS, SITE, 1, cost)
    assert info.value.field == "placement"


def test_percentile_interpolates():
    assert training.percentile([1, 2, 3, 4], 50) == 2.5
    assert training.percentile([5], 99) == 5
    assert training.percentile([1, 2, 3, 4, 5], 100) == 5


def test_compute_draws_follow_the_gpu_table_and_noise_floor():
    rng = random.Random(1)
    draws = [training._compute_s("A100", {}, 5.0, rng) for _ in range(2000)]
    mean = sum(draws) / len(draws)
    assert mean == pytest.approx(0.25, rel=0.01)
    assert training._compute_s("H100", {"H100": 40.0}, 0.0, rng) == pytest.approx(0.040)
    assert min(training._compute_s("T4", {}, 100.0, rng) for _ in range(500)) >= 0.1 * 1.5 - 1e-12


def test_attribution_names_the_slowest_compute_and_the_slowest_transfers_link():
    plan = LabPlan(lab="x", block="10.0.0.0/16", nodes={}, links=[], segments={})  # no path: the pair's name stands in
    ranks = ["a-h1", "b-h1", "b-h2"]
    sites = {"a-h1": "a", "b-h1": "b", "b-h2": "b"}
    gpus = {"a-h1": "A100", "b-h1": "H100", "b-h2": "H100"}
    transfers = [(0, 0, 1, 100, 0.30, 0.35), (1, 1, 2, 100, 0.35, 0.36), (2, 2, 0, 100, 0.36, 0.50)]
    out = training._attribute(ranks, sites, gpus, [0.30, 0.10, 0.12], transfers, plan, 0.5)
    assert out["slowest_site"] == "a" and out["slowest_rank"] == 0
    assert out["bottleneck_pair"] == "b-h2->a-h1"
    assert out["ranks"][1]["waited_compute_ms"] == pytest.approx(200.0)
    assert out["ranks"][1]["waited_comm_ms"] == pytest.approx(200.0)


def test_training_options_validate_and_convert():
    opts = TrainingOptions(model_size="32MB", compute_ms={"A100": 300}).engine_options()
    assert opts["model_size_bytes"] == 32_000_000 and opts["placements"] == ["naive", "topology"]
    with pytest.raises(ValueError):
        TrainingOptions(placements=["naive", "naive"])
    with pytest.raises(ValueError):
        TrainingOptions(compute_ms={"B200": 10})
