"""Alpha-beta models: hand-worked cases, and agreement with our schedules' simulation.

Hand-worked numbers use a = 10 us and b = 0.001 us/byte (1 GB/s) unless
stated; each case's arithmetic is written out next to it.
"""

from __future__ import annotations

import itertools

import pytest

from testbed.collectives import model
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.order import interleaved_order, site_of, topology_aware_order
from testbed.collectives.simulate import simulate_time_us, site_link
from testbed.errors import InputError

A, B = 10.0, 0.001


def test_alpha_beta_from_links():
    # 40 ms one way -> 40000 us; 250 Mbit/s -> 8 / 250e6 s per byte = 0.032 us
    assert model.alpha_beta_from_links(40.0, 250e6) == pytest.approx((40000.0, 0.032))
    assert model.alpha_beta_from_links(0.0, 8e9, overhead_us=5.0) == pytest.approx((5.0, 0.001))
    with pytest.raises(InputError):
        model.alpha_beta_from_links(1.0, 0)


def test_window_limited_beta():
    # 4 MiB over 80 ms: 80000 us / 4194304 B = 0.01907 us/B (~0.42 Gbit/s), slower than 1 GB/s
    assert model.window_limited_beta(0.001, 80.0, 4 * 2**20) == pytest.approx(80000 / 2**22)
    rate_bps = 8e6 / model.window_limited_beta(0.001, 80.0, 4 * 2**20)
    assert rate_bps == pytest.approx(0.42e9, rel=0.01)
    # two sockets double the window; a short RTT leaves the link as the limit
    assert model.window_limited_beta(0.001, 80.0, 4 * 2**20, 2) == pytest.approx(40000 / 2**22)
    assert model.window_limited_beta(0.001, 0.1, 4 * 2**20) == 0.001
    with pytest.raises(InputError):
        model.window_limited_beta(0.001, 1.0, 0)


@pytest.mark.parametrize("fn,args,want", [
    # 2*3*10 + 2*(3/4)*1e6*0.001 = 60 + 1500
    (model.ring_allreduce_us, (4, 1e6, A, B), 1560.0),
    # 3*10 + (3/4)*1e6*0.001 = 30 + 750
    (model.ring_allgather_us, (4, 1e6, A, B), 780.0),
    (model.ring_reduce_scatter_us, (4, 1e6, A, B), 780.0),
    # 2*lg8*10 + 2*(7/8)*8e5*0.001 = 60 + 1400
    (model.rabenseifner_allreduce_us, (8, 8e5, A, B), 1460.0),
    # p=6 -> p2=4: 2*2*10 + 2*(3/4)*800 + fold 2*(10 + 800) = 40 + 1200 + 1620
    (model.rabenseifner_allreduce_us, (6, 8e5, A, B), 2860.0),
    # lg8*(10 + 800)
    (model.recursive_doubling_allreduce_us, (8, 8e5, A, B), 2430.0),
    (model.binomial_broadcast_us, (8, 8e5, A, B), 2430.0),
    # chain of 4, 4 chunks of 250 kB: 3*(10 + 250) + 3*250 = 780 + 750
    (model.chain_us, (4, 1e6, A, B, 4), 1530.0),
    # (p-1)(a + n/p b) = 3*(10 + 250)
    (model.pairwise_alltoall_us, (4, 1e6, A, B), 780.0),
    (model.sendrecv_us, (2, 1e6, A, B), 1010.0),
    # binary tree p=7 (depth 2), n=1000 B, b=0.01: allreduce 2*2*(10 + 2*10) = 120
    (model.tree_allreduce_us, (7, 1000, A, 0.01, "binary"), 120.0),
    # broadcast 2*(10 + 20) = 60
    (model.tree_broadcast_us, (7, 1000, A, 0.01, "binary"), 60.0),
    # double tree p=8 (depth 3), halves of 500 B: 2*3*(10 + 2*5) = 120; bcast (3+1)*20 = 80
    (model.tree_allreduce_us, (8, 1000, A, 0.01, "double"), 120.0),
    (model.tree_broadcast_us, (8, 1000, A, 0.01, "double"), 80.0),
])
def test_hand_worked(fn, args, want):
    assert fn(*args) == pytest.approx(want)


@pytest.mark.parametrize("a,want", [
    # p=2, n=4e5, K=2: m = 4e5/(2*2) = 1e5 B -> m b = 100 us, S = 2 steps
    (0.0, 400.0),      # max(2*(0+100) + 100, 2*2*100 + 0) = max(300, 400)
    (100.0, 500.0),    # max(2*200 + 100, 400 + 100)
    (1000.0, 2300.0),  # max(2*1100 + 100, 400 + 1000)
])
def test_ring_pipelining(a, want):
    assert model.ring_allreduce_us(2, 4e5, a, B, nchunks=2) == pytest.approx(want)


def test_one_rank_costs_nothing():
    for fn in (model.ring_allreduce_us, model.rabenseifner_allreduce_us, model.chain_us,
               model.tree_allreduce_us, model.pairwise_alltoall_us, model.sendrecv_us):
        assert fn(1, 1e6, A, B) == 0.0


def test_hierarchical_hand_worked():
    # 2 sites x 4 ranks, n = 8e6 B; local 5 us, 1e-4 us/B; WAN 5000 us, 1e-3 us/B
    # local: 2*3*5 + 2*(3/4)*8e6*1e-4 = 30 + 1200 = 1230
    # WAN per rank: 2*1*5000 + 2*(1/2)*(8e6/4)*1e-3 = 10000 + 2000
    # shared WAN link: bandwidth term x4 -> 8000
    args = ([4, 4], 8e6, 5.0, 1e-4, 5000.0, 1e-3)
    assert model.hierarchical_allreduce_us(*args, shared_wan_link=False) == pytest.approx(13230.0)
    assert model.hierarchical_allreduce_us(*args) == pytest.approx(19230.0)
    # one site is a plain ring allreduce
    assert model.hierarchical_allreduce_us([8], 8e6, A, B, 1e9, 1e9) == pytest.approx(
        model.ring_allreduce_us(8, 8e6, A, B))


def test_flat_ring_over_two_sites_pays_wan_latency_every_step():
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
    local, wan = (5.0, 1e-4), (5000.0, 1e-3)
    aware = model.ring_link_params(topology_aware_order(groups), groups, local, wan)
    naive = model.ring_link_params(interleaved_order(groups), groups, local, wan)
    assert aware == (5000.0, 1e-3)      # one crossing each way: the WAN link alone
    assert naive == (5000.0, 4e-3)      # four crossings each way share the WAN link
    assert model.ring_link_params([0, 1, 2, 3], [[0, 1, 2, 3]], local, wan) == local
    # 2*7*5000 + 2*(7/8)*8e6*1e-3 = 70000 + 14000
    flat = model.ring_allreduce_us(8, 8e6, *aware)
    assert flat == pytest.approx(84000.0)
    assert model.hierarchical_allreduce_us([4, 4], 8e6, *local, *wan) < flat


def test_model_time_us_dispatch():
    n = 64 * 2**20
    # default chunk 512 KiB: K = 64 MiB / (8 * 512 KiB) = 16 chunks
    assert model.model_time_us("allreduce", "ring", 8, n, A, B) == pytest.approx(
        model.ring_allreduce_us(8, n, A, B, nchunks=16))
    assert model.model_time_us("allreduce", "ring", 8, n, A, B, nchunks=1) == pytest.approx(
        2 * 7 * A + 2 * 7 / 8 * n * B)
    assert model.model_time_us("allgather", "ring", 4, 1e6, A, B, nchunks=1) == pytest.approx(780)
    assert model.model_time_us("alltoall", "ring", 4, 1e6, A, B) == pytest.approx(780)
    assert model.model_time_us("allreduce", "rabenseifner", 6, 8e5, A, B) == pytest.approx(2860)
    assert model.model_time_us("allreduce", "hierarchical", 8, 8e6, 5.0, 1e-4,
                               groups=[[0, 1, 2, 3], [4, 5, 6, 7]], alpha_wan_us=5000.0,
                               beta_wan_us_per_byte=1e-3) == pytest.approx(19230.0)
    assert model.model_time_us("broadcast", "tree", 7, 1000, A, 0.01, kind="binary") == 60
    assert model.model_time_us("allreduce", "ring", 1, n, A, B) == 0.0


@pytest.mark.parametrize("kwargs,field", [
    ({"op": "alltoall", "algorithm": "tree"}, "algorithm"),
    ({"op": "allreduce", "algorithm": "nosuch"}, "algorithm"),
    ({"op": "allreduce", "algorithm": "ring", "use_htb": 1}, "algorithm.ring"),
    ({"op": "allreduce", "algorithm": "tree", "kind": "ternary"}, "kind"),
])
def test_model_time_us_rejects(kwargs, field):
    args = dict(kwargs)
    with pytest.raises(InputError) as info:
        model.model_time_us(args.pop("op"), args.pop("algorithm"), 4, 1000, A, B, **args)
    assert info.value.field == field


# ------------------------------------------- closed forms vs our schedules, simulated


@pytest.mark.parametrize("p,k,a,b", list(itertools.product(
    [2, 3, 4, 8], [1, 2, 5, 32], [0.0, 10.0, 300.0, 5000.0], [0.001, 0.1])))
def test_ring_allreduce_model_is_exact_for_our_schedule(p, k, a, b):
    count = p * k * 64
    schedule = build_schedule("allreduce", "ring", p, count, nchunks=k)
    assert simulate_time_us(schedule, a, b) == pytest.approx(
        model.ring_allreduce_us(p, count * 4, a, b, nchunks=k))


@pytest.mark.parametrize("p", [2, 3, 4, 5, 7, 8, 16])
def test_other_closed_forms_match_the_simulation(p):
    a, b = 100.0, 0.01
    count = p * 768  # divisible by p, by 3 and 4 chunks: no uneven split
    n = count * 4
    cases = [
        ("allreduce", "rabenseifner", {}, model.rabenseifner_allreduce_us(p, n, a, b)),
        ("allgather", "ring", {"nchunks": 3}, model.ring_allgather_us(p, n * p, a, b, 3)),
        ("reduce_scatter", "ring", {}, model.ring_reduce_scatter_us(p, n * p, a, b)),
        ("broadcast", "ring", {"nchunks": 4}, model.chain_us(p, n, a, b, 4)),
        ("reduce", "ring", {"nchunks": 4}, model.chain_us(p, n, a, b, 4)),
        ("alltoall", "ring", {}, model.pairwise_alltoall_us(p, n * p, a, b)),
        ("sendrecv", "ring", {}, model.sendrecv_us(p, n, a, b)),
    ]
    for op, algo, params, want in cases:
        schedule = build_schedule(op, algo, p, count, **params)
        assert simulate_time_us(schedule, a, b) == pytest.approx(want), (op, algo)


@pytest.mark.parametrize("p", [3, 7, 15])
def test_binary_tree_model_is_exact_on_perfect_trees(p):
    a, b, count = 10.0, 0.01, 1000
    for op, fn in (("allreduce", model.tree_allreduce_us), ("broadcast", model.tree_broadcast_us),
                   ("reduce", model.tree_broadcast_us)):
        schedule = build_schedule(op, "tree", p, count, kind="binary", nchunks=1)
        assert simulate_time_us(schedule, a, b) == pytest.approx(fn(p, count * 4, a, b, "binary"))


@pytest.mark.parametrize("sites,per", [(2, 4), (2, 2), (3, 4), (4, 2)])
def test_hierarchical_model_matches_simulation(sites, per):
    groups = [list(range(i * per, (i + 1) * per)) for i in range(sites)]
    count = sites * per * sites * 256
    local, wan = (5.0, 0.001), (5000.0, 0.01)
    schedule = build_schedule("allreduce", "hierarchical", sites * per, count, groups=groups,
                              nchunks=1)
    sizes = [per] * sites
    exact = site_link(site_of(groups), local, wan, shared_wan_link=False)
    assert simulate_time_us(schedule, link=exact) == pytest.approx(
        model.hierarchical_allreduce_us(sizes, count * 4, *local, *wan, shared_wan_link=False))
    shared = site_link(site_of(groups), local, wan, shared_wan_link=True)
    want = model.hierarchical_allreduce_us(sizes, count * 4, *local, *wan)
    assert simulate_time_us(schedule, link=shared) == pytest.approx(want, rel=0.05)


def test_hierarchical_beats_flat_ring_across_two_sites_in_simulation():
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
    link = site_link(site_of(groups), (5.0, 1e-4), (5000.0, 1e-3))
    count = 2**20
    hier = build_schedule("allreduce", "hierarchical", 8, count, groups=groups)
    aware = build_schedule("allreduce", "ring", 8, count, order=topology_aware_order(groups))
    naive = build_schedule("allreduce", "ring", 8, count, order=interleaved_order(groups))
    t_hier, t_aware, t_naive = (simulate_time_us(s, link=link) for s in (hier, aware, naive))
    assert t_hier < t_aware < t_naive
