"""Every operation x algorithm is correct, race-free and shaped as documented.

Correctness: each schedule runs in the reference executor deterministically
and under random interleavings (transfers split into pieces, applied in
random orders) on random inputs, over rank counts {1,2,3,4,5,7,8,16} and
counts {0,1,7,1000,1003}; the outputs must match numpy's exactly (the
inputs are exactly summable). Every schedule must also pass the structural
check and the static happens-before race check.
"""

from __future__ import annotations

import numpy as np
import pytest

from testbed.collectives import ops
from testbed.collectives.algorithms import ALGORITHMS, algorithms_for, build_schedule
from testbed.collectives.algorithms.tree import binary_tree, double_binary_tree
from testbed.collectives.races import find_races
from testbed.collectives.reference import execute, execute_random
from testbed.collectives.schedule import REDUCE
from testbed.errors import InputError

RANKS = [1, 2, 3, 4, 5, 7, 8, 16]
COUNTS = [0, 1, 7, 1000, 1003]
COMBOS = [(name, op) for name, algo in ALGORITHMS.items() for op in algo.ops]


def _two_sites(n):
    return [list(range(0, (n + 1) // 2)), list(range((n + 1) // 2, n))] if n > 1 else [[0]]


def _variants(name, n):
    """Parameter sets exercised for an algorithm on n ranks."""
    rng = np.random.default_rng(n)
    shuffled = [int(r) for r in rng.permutation(n)]
    if name == "ring":
        return [{}, {"nchunks": 3, "order": shuffled}, {"chunk_bytes": 512}]
    if name == "tree":
        return [{}, {"kind": "binary", "nchunks": 2}, {"kind": "double", "order": shuffled,
                                                       "chunk_bytes": 256}]
    if name == "rabenseifner":
        return [{}, {"order": shuffled}]
    return [{}, {"groups": _two_sites(n), "nchunks": 2},
            {"groups": [[r] for r in shuffled]},  # one rank per site
            {"groups": [shuffled[: n // 3], shuffled[n // 3:]] if n >= 3 else [shuffled]}]


def _check(op, name, n, count, params, runs=2):
    root = (n - 1) if ops.OPS[op].rooted else 0
    schedule = build_schedule(op, name, n, count, root, **params)
    schedule.validate()
    races = find_races(schedule)
    assert not races, f"{op}/{name} n={n} count={count} {params}: {races}"
    inputs = ops.make_inputs(op, n, count, seed=count + n)
    want = ops.expected(op, inputs, root)
    outputs = [execute(schedule, inputs)] + execute_random(schedule, inputs, runs=runs, seed=n)
    for out in outputs:
        for rank, (got, exp) in enumerate(zip(out, want)):
            if exp is None:
                assert got is None
                continue
            assert got is not None and got.shape == exp.shape, (op, name, n, count, rank)
            np.testing.assert_array_equal(got, exp.astype(np.float32),
                                          err_msg=f"{op}/{name} n={n} count={count} "
                                                  f"{params} rank {rank}")
        assert ops.count_wrong(op, out, want) == 0
    return schedule


@pytest.mark.parametrize("name,op", COMBOS)
@pytest.mark.parametrize("n", RANKS)
def test_every_op_and_algorithm_is_correct(name, op, n):
    for count in COUNTS:
        for params in _variants(name, n):
            _check(op, name, n, count, params)


@pytest.mark.parametrize("name,op", COMBOS)
def test_one_rank_and_zero_count_need_no_transfers(name, op):
    assert build_schedule(op, name, 1, 1003).transfers == []
    assert build_schedule(op, name, 5, 0).transfers == []


@pytest.mark.parametrize("root", [0, 2, 4])
@pytest.mark.parametrize("name,op", [(a, o) for a, o in COMBOS if o in ("broadcast", "reduce")])
def test_every_root(name, op, root):
    schedule = build_schedule(op, name, 5, 1003, root)
    inputs = ops.make_inputs(op, 5, 1003, seed=root)
    out = execute(schedule, inputs, np.random.default_rng(root))
    assert ops.count_wrong(op, out, ops.expected(op, inputs, root)) == 0


def test_every_operation_has_an_algorithm_and_registry_names_match():
    for op in ops.OPS:
        assert "ring" in algorithms_for(op)
    assert set(ALGORITHMS) == {"ring", "tree", "rabenseifner", "hierarchical"}
    for name, algo in ALGORITHMS.items():
        assert algo.name == name
        assert build_schedule(algo.ops[0], name, 4, 16).algorithm == name


# ---------------------------------------------------------------- input errors


@pytest.mark.parametrize("kwargs,field", [
    ({"op": "allreduce", "algorithm": "nosuch"}, "algorithm"),
    ({"op": "alltoall", "algorithm": "tree"}, "algorithm"),
    ({"op": "reduce_scatter", "algorithm": "rabenseifner"}, "algorithm"),
    ({"op": "gather", "algorithm": "ring"}, "op"),
    ({"op": "allreduce", "algorithm": "ring", "ranks": 0}, "ranks"),
    ({"op": "allreduce", "algorithm": "ring", "count": -1}, "count"),
    ({"op": "broadcast", "algorithm": "ring", "root": 4}, "root"),
    ({"op": "allreduce", "algorithm": "ring", "use_htb": True}, "algorithm.ring"),
    ({"op": "allreduce", "algorithm": "ring", "order": [0, 1, 1, 3]}, "order"),
    ({"op": "allreduce", "algorithm": "ring", "nchunks": 0}, "nchunks"),
    ({"op": "allreduce", "algorithm": "ring", "chunk_bytes": 2}, "chunk_bytes"),
    ({"op": "allreduce", "algorithm": "tree", "kind": "ternary"}, "kind"),
    ({"op": "allreduce", "algorithm": "hierarchical", "groups": [[0, 1], [1, 2, 3]]}, "groups"),
    ({"op": "allreduce", "algorithm": "hierarchical", "groups": [[0, 1, 2, 3], []]}, "groups"),
])
def test_bad_input_names_the_field(kwargs, field):
    args = {"ranks": 4, "count": 100, **kwargs}
    with pytest.raises(InputError) as info:
        build_schedule(args.pop("op"), args.pop("algorithm"), args.pop("ranks"),
                       args.pop("count"), args.pop("root", 0), **args)
    assert info.value.field == field


def test_unsupported_combination_lists_alternatives():
    with pytest.raises(InputError, match="for alltoall: ring"):
        build_schedule("alltoall", "tree", 4, 100)


# ---------------------------------------------------------------- shapes


def test_ring_allreduce_moves_the_textbook_volume():
    n, count = 8, 8000
    schedule = build_schedule("allreduce", "ring", n, count)
    per_rank = {r: 0 for r in range(n)}
    for t in schedule.transfers:
        per_rank[t.src] += t.elems
        assert t.dst == (t.src + 1) % n  # identity order: neighbours only
    assert set(per_rank.values()) == {2 * (n - 1) * count // n}
    assert len(schedule.transfers) == 2 * (n - 1) * n


def test_ring_follows_the_given_order():
    order = [3, 0, 2, 1]
    schedule = build_schedule("allreduce", "ring", 4, 400, order=order)
    edges = {(t.src, t.dst) for t in schedule.transfers}
    assert edges == {(3, 0), (0, 2), (2, 1), (1, 3)}


def test_ring_chunks_pipeline_independently():
    n, k = 4, 3
    schedule = build_schedule("allreduce", "ring", n, 1200, nchunks=k)
    assert len(schedule.transfers) == k * 2 * (n - 1) * n
    # chunk i covers [400 i, 400 (i+1)); a transfer only depends on its own chunk
    for t in schedule.transfers:
        chunk = t.src_slice[0] // 400
        for dep in t.deps:
            assert schedule.transfers[dep].src_slice[0] // 400 == chunk
    # every chunk can start at once: n first-step sends per chunk have no deps
    assert sum(1 for t in schedule.transfers if not t.deps) == k * n


def test_chunk_bytes_sets_the_message_size():
    schedule = build_schedule("allreduce", "ring", 4, 4096, chunk_bytes=1024)
    assert max(t.nbytes() for t in schedule.transfers) <= 1024
    assert len({t.src_slice for t in schedule.transfers}) == 16  # 4 chunks x 4 segments


def test_reduce_scatter_only_reduces_and_allgather_only_copies():
    rs = build_schedule("reduce_scatter", "ring", 5, 10)
    ag = build_schedule("allgather", "ring", 5, 10)
    assert {t.op for t in rs.transfers} == {REDUCE}
    assert {t.op for t in ag.transfers} == {"copy"}
    assert len(rs.transfers) == len(ag.transfers) == 5 * 4


def test_alltoall_is_pairwise_exchange_in_steps():
    n = 5
    schedule = build_schedule("alltoall", "ring", n, 3)
    pairs = {(t.src, t.dst) for t in schedule.transfers}
    assert pairs == {(a, b) for a in range(n) for b in range(n) if a != b}
    first = [t for t in schedule.transfers if not t.deps]
    assert {(t.dst - t.src) % n for t in first} == {1}  # step 1 only; later steps wait


@pytest.mark.parametrize("m", range(1, 40))
def test_double_binary_tree_interior_in_at_most_one_tree(m):
    first, second = double_binary_tree(m)
    for tree in (first, second):
        assert sorted(tree.preorder()) == list(range(m))
        assert all(len(kids) <= 2 for kids in tree.children.values())
        assert tree.depth() == m.bit_length() - 1
    assert not set(first.interior()) & set(second.interior())


def test_binary_tree_is_in_order():
    tree = binary_tree(7)  # positions 0..6 = 1-based 1..7: root 4, then 2 and 6
    assert tree.root == 3
    assert tree.children[3] == [1, 5]
    assert tree.children[1] == [0, 2]
    assert tree.children[0] == []


def test_double_tree_splits_data_between_two_trees():
    schedule = build_schedule("allreduce", "tree", 8, 1000, nchunks=1)
    up_from_leaves = [t for t in schedule.transfers if not t.deps and t.op == REDUCE]
    halves = {t.src_slice for t in up_from_leaves}
    assert halves == {(0, 500), (500, 1000)}


def test_rabenseifner_volume_and_steps_power_of_two():
    n, count = 8, 800
    schedule = build_schedule("allreduce", "rabenseifner", n, count)
    assert len(schedule.transfers) == 2 * 3 * n
    sent = {r: 0 for r in range(n)}
    for t in schedule.transfers:
        sent[t.src] += t.elems
    assert set(sent.values()) == {2 * (n - 1) * count // n}


def test_rabenseifner_folds_extra_ranks():
    schedule = build_schedule("allreduce", "rabenseifner", 6, 100)
    whole = [t for t in schedule.transfers if t.src_slice == (0, 100)]
    # two folded pairs: extra -> partner (reduce) first, partner -> extra (copy) last
    assert sorted((t.src, t.dst, t.op) for t in whole) == [
        (0, 1, "copy"), (1, 0, "reduce"), (2, 3, "copy"), (3, 2, "reduce")]


def test_hierarchical_crosses_sites_with_shards_only():
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
    count = 8000
    site = {r: i for i, g in enumerate(groups) for r in g}
    hier = build_schedule("allreduce", "hierarchical", 8, count, groups=groups)
    flat = build_schedule("allreduce", "ring", 8, count, order=[0, 4, 1, 5, 2, 6, 3, 7])

    def wan_elems(schedule):
        return sum(t.elems for t in schedule.transfers if site[t.src] != site[t.dst])

    # 4 shards of count/4; each allreduced between its 2 holders: reduce-scatter
    # and allgather each send half a shard from each holder across
    shard = count // 4
    assert wan_elems(hier) == 4 * 2 * 2 * (shard // 2)
    assert wan_elems(flat) == 2 * 7 * count  # every edge of this ring crosses
    crossing = {(t.src, t.dst) for t in hier.transfers if site[t.src] != site[t.dst]}
    assert crossing == {(i, i + 4) for i in range(4)} | {(i + 4, i) for i in range(4)}
