"""The rendezvous protocol as a schedule transform (testbed.collectives.protocol).

* structure: one zero-byte ready transfer per data transfer, dense ids, the
  schedule contract kept, params recorded, bad arguments name their field;
* issue order: transfer ids are a topological order but, for chunked
  schedules, not the order a sender issues messages; the per-pair order used
  is by dependency depth (for the gloo-shaped ring: gloo's segment order);
* correctness: every algorithm and operation gives the same results under
  rendezvous as under eager, deterministically and in random interleavings,
  without races; none deadlocks at window 1 or 2 (and a receiver announcing
  out of order is refused, naming the pair);
* timing, worked by hand: the alpha-beta simulator on rendezvous rings equals
  closed forms derived below, the latency-bound ratio is the round trip's,
  and the two-site figures (4, 16, 64 MiB) are pinned, with what the port
  model's handling of zero-byte transfers adds to them.
"""

from __future__ import annotations

import numpy as np
import pytest

from testbed.collectives import ops
from testbed.collectives.algorithms import ALGORITHMS, build_schedule
from testbed.collectives.protocol import (
    PROTOCOLS,
    apply_protocol,
    gloo_ring_params,
    issue_order,
)
from testbed.collectives.races import find_races
from testbed.collectives.reference import execute, execute_random
from testbed.collectives.schedule import Schedule, ScheduleError, Transfer, topological_order
from testbed.collectives.simulate import LinkCost, simulate_time_us, site_link
from testbed.errors import InputError

COMBOS = [(name, op) for name, algo in ALGORITHMS.items() for op in algo.ops]
MiB = 1024 * 1024


def _variants(name, n):
    """Parameter sets per algorithm: defaults, chunked, shuffled orders, uneven sites."""
    shuffled = [int(r) for r in np.random.default_rng(n).permutation(n)]
    if name == "ring":
        return [{}, {"nchunks": 3, "order": shuffled}, gloo_ring_params(n)]
    if name == "tree":
        return [{}, {"kind": "binary", "nchunks": 2}, {"nchunks": 3, "order": shuffled}]
    if name == "rabenseifner":
        return [{}, {"order": shuffled}]
    cut = max(1, n // 3)
    return [{}, {"groups": [list(range((n + 1) // 2)), list(range((n + 1) // 2, n))],
                 "nchunks": 2},
            {"groups": [shuffled[:cut], shuffled[cut:]], "nchunks": 3}]


def _root(op, n):
    return n - 1 if ops.OPS[op].rooted else 0


def _allreduce_count(size_bytes):
    return ops.count_for_size("allreduce", size_bytes, 4)


# ------------------------------------------------------------------ structure


def test_protocols_and_eager_returns_the_schedule_itself():
    assert PROTOCOLS == ("eager", "rendezvous")
    schedule = build_schedule("allreduce", "ring", 4, 100)
    assert apply_protocol(schedule) is schedule
    assert apply_protocol(schedule, "eager", window=5) is schedule


@pytest.mark.parametrize("window", [1, 2, 3])
def test_rendezvous_adds_one_ready_transfer_per_data_transfer(window):
    schedule = build_schedule("allreduce", "ring", 4, 1003, nchunks=2)
    before = list(schedule.transfers)
    out = apply_protocol(schedule, "rendezvous", window)
    assert schedule.transfers == before and "protocol" not in schedule.params  # input untouched
    out.validate()  # dense ids, deps received by the sender, acyclic
    n = len(before)
    assert len(out.transfers) == 2 * n
    assert [t.id for t in out.transfers] == list(range(2 * n))
    assert out.params == {**schedule.params, "protocol": "rendezvous", "window": window}
    assert (out.op, out.algorithm, out.ranks, out.count, out.work_elems) == \
        (schedule.op, schedule.algorithm, schedule.ranks, schedule.count, schedule.work_elems)
    assert out.bytes_sent() == schedule.bytes_sent()  # tokens carry no payload

    tokens = out.transfers[n:]
    gate = {}  # token id -> the data transfer it gates
    for data in out.transfers[:n]:
        old = before[data.id]
        (token,) = set(data.deps) - set(old.deps)
        assert set(old.deps) <= set(data.deps) and token >= n
        gate[token] = data
        assert data.src_slice == old.src_slice and data.op == old.op
    assert sorted(gate) == [t.id for t in tokens]
    for (src, dst), ids in issue_order(schedule).items():
        for i, tid in enumerate(ids):
            token = next(t for t in tokens if gate[t.id].id == tid)
            assert (token.src, token.dst) == (dst, src)
            assert token.src_slice == token.dst_slice == (0, 0) and token.op == "copy"
            assert token.elems == 0
            assert token.deps == ((ids[i - window],) if i >= window else ())


def test_tokens_follow_the_placement_of_their_pair():
    placed = build_schedule("allreduce", "ring", 4, 64).placed(["h0", "h0", "h1", "h1"])
    out = apply_protocol(placed, "rendezvous")
    n = len(placed.transfers)
    for token in out.transfers[n:]:
        assert token.local == (token.src // 2 == token.dst // 2)


@pytest.mark.parametrize("kwargs,field", [
    ({"protocol": "credit"}, "protocol"),
    ({"protocol": None}, "protocol"),
    ({"protocol": "rendezvous", "window": 0}, "window"),
    ({"protocol": "rendezvous", "window": -2}, "window"),
    ({"protocol": "rendezvous", "window": 1.5}, "window"),
    ({"protocol": "rendezvous", "window": True}, "window"),
    ({"protocol": "rendezvous", "window": "2"}, "window"),
    ({"protocol": "eager", "window": 0}, "window"),
    ({"protocol": "eager", "order": {}}, "order"),
    ({"protocol": "rendezvous", "order": {(0, 2): [0]}}, "order"),  # no such pair
    ({"protocol": "rendezvous", "order": {(0, 1): [0]}}, "order"),  # not a permutation
    ({"protocol": "rendezvous", "order": {(0,): [0]}}, "order"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    schedule = build_schedule("allreduce", "ring", 4, 100)
    with pytest.raises(InputError) as info:
        apply_protocol(schedule, **kwargs)
    assert info.value.field == field


def test_rendezvous_twice_is_refused():
    once = apply_protocol(build_schedule("allreduce", "ring", 3, 30), "rendezvous")
    with pytest.raises(InputError) as info:
        apply_protocol(once, "rendezvous")
    assert info.value.field == "protocol"
    assert apply_protocol(once, "eager") is once


def test_params_with_unknown_keys_break_nothing():
    # nothing reads Schedule.params back (grep: only the builders write it);
    # the transformed schedule still places, validates, runs and simulates
    out = apply_protocol(build_schedule("allreduce", "ring", 3, 30), "rendezvous")
    placed = out.placed(["a", "b", "b"])
    assert placed.params["protocol"] == "rendezvous" and placed.params["window"] == 2
    inputs = ops.make_inputs("allreduce", 3, 30, seed=1)
    want = ops.expected("allreduce", inputs)
    assert ops.count_wrong("allreduce", execute(placed, inputs), want) == 0
    assert simulate_time_us(placed, 10.0, 0.001) > 0


def test_gloo_ring_params():
    assert gloo_ring_params(4) == {"order": [0, 1, 2, 3], "nchunks": 2}
    for bad in (0, -1, 2.0, True, None):
        with pytest.raises(InputError) as info:
            gloo_ring_params(bad)
        assert info.value.field == "ranks"
    # accepted by the ring; each rank's share is two segments of count/(2p)
    schedule = build_schedule("allreduce", "ring", 4, 800, **gloo_ring_params(4))
    assert len(schedule.transfers) == 2 * 2 * (4 - 1) * 4  # chunks x steps x ranks
    assert {t.elems for t in schedule.transfers} == {100}


# ---------------------------------------------------------------- issue order


@pytest.mark.parametrize("name,op", COMBOS)
def test_transfer_ids_are_a_topological_order(name, op):
    """Every algorithm adds a transfer after its deps: id order never deadlocks either."""
    for n in (2, 3, 5, 8):
        for params in _variants(name, n):
            schedule = build_schedule(op, name, n, 1003, _root(op, n), **params)
            assert all(dep < t.id for t in schedule.transfers for dep in t.deps)
            for ids in issue_order(schedule).values():  # issue order is one too
                position = {tid: k for k, tid in enumerate(ids)}
                for tid in ids:
                    for dep in schedule.transfers[tid].deps:
                        if dep in position:
                            assert position[dep] < position[tid]


def test_id_order_is_not_the_issue_order_of_chunked_schedules():
    """Chunked ring: ids go chunk by chunk; a sender issues step by step (gloo's order)."""
    p = 4
    schedule = build_schedule("allreduce", "ring", p, 800, **gloo_ring_params(p))
    ids = sorted(t.id for t in schedule.transfers if (t.src, t.dst) == (0, 1))
    order = issue_order(schedule)[(0, 1)]
    assert sorted(order) == ids and order != ids
    steps = 2 * (p - 1)
    # ids: chunk 0's steps 0..5, then chunk 1's; issue order: (step, chunk) --
    # gloo's segments: at iteration i a rank sends segment i, two per block
    assert order == [ids[chunk * steps + step] for step in range(steps) for chunk in range(2)]
    # which algorithms differ (for the record): chunked ring phases, double
    # trees (a pair is an edge of both trees), chunked hierarchical
    differs = set()
    for name, op in COMBOS:
        for params in _variants(name, 5):
            schedule = build_schedule(op, name, 5, 1003, _root(op, 5), **params)
            if any(v != sorted(v) for v in issue_order(schedule).values()):
                differs.add((name, op))
    assert differs == {("ring", "allreduce"), ("ring", "reduce_scatter"), ("ring", "allgather"),
                       ("tree", "allreduce"), ("hierarchical", "allreduce")}


def test_issue_order_keeps_chunks_pipelined():
    """Id order would make chunk 1 wait for chunk 0's late steps: never faster, often slower.

    Ring allreduce, 4 ranks, 2 chunks, mb = 3.2 us, a = 1 ms (latency-bound).
    With window 4 (two buffers per chunk) the issue order announces the next
    step of both chunks in time: eager + a = 6011.2 + 1000. In id order
    (chunk-major) chunk 1's first message is message 6 on its pair and is
    announced only after message 2 -- chunk 0's step 2 -- arrived.
    """
    schedule = build_schedule("allreduce", "ring", 4, 4000, nchunks=2)
    by_ids = {pair: sorted(ids) for pair, ids in issue_order(schedule).items()}
    a, b = 1000.0, 0.0008
    eager = simulate_time_us(schedule, a, b)
    for window in (1, 2, 3, 4, 6):
        issued = simulate_time_us(apply_protocol(schedule, "rendezvous", window), a, b)
        chunk_major = simulate_time_us(apply_protocol(schedule, "rendezvous", window,
                                                      order=by_ids), a, b)
        assert chunk_major >= issued - 1e-9, window
    issued = simulate_time_us(apply_protocol(schedule, "rendezvous", 4), a, b)
    chunk_major = simulate_time_us(apply_protocol(schedule, "rendezvous", 4, order=by_ids), a, b)
    assert issued == pytest.approx(eager + a) == pytest.approx(7011.2)
    assert chunk_major > 1.5 * issued


# ------------------------------------------------------------- correctness


def _outputs_match(out, want, label):
    for rank, (got, exp) in enumerate(zip(out, want)):
        if exp is None:
            assert got is None, label
            continue
        np.testing.assert_array_equal(got, exp.astype(np.float32), err_msg=f"{label} rank {rank}")


@pytest.mark.parametrize("name,op", COMBOS)
@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_rendezvous_gives_the_eager_results(name, op, n):
    for count in (1, 7, 1003):  # odd ranks, counts not divisible by the rank count
        for params in _variants(name, n):
            root = _root(op, n)
            eager = build_schedule(op, name, n, count, root, **params)
            inputs = ops.make_inputs(op, n, count, seed=count + n)
            want = ops.expected(op, inputs, root)
            reference = execute(eager, inputs)
            for window in (1, 2):
                label = f"{op}/{name} n={n} count={count} {params} window={window}"
                rdv = apply_protocol(eager, "rendezvous", window)
                rdv.validate()
                assert find_races(rdv) == [], label
                runs = [execute(rdv, inputs)] + execute_random(rdv, inputs, runs=2, seed=n)
                for out in runs:
                    _outputs_match(out, want, label)
                    _outputs_match(out, reference, label)


@pytest.mark.parametrize("window", [1, 2])
@pytest.mark.parametrize("name,op", COMBOS)
def test_no_shipped_algorithm_deadlocks(name, op, window):
    """apply_protocol refuses cycles; no algorithm, rank count or variant has one."""
    for n in (2, 3, 4, 5, 6, 7, 8, 9, 16):
        for params in _variants(name, n):
            schedule = build_schedule(op, name, n, 1003, _root(op, n), **params)
            rdv = apply_protocol(schedule, "rendezvous", window)  # would raise ScheduleError
            assert len(topological_order(rdv.transfers)) == 2 * len(schedule.transfers)


@pytest.mark.parametrize("positions,deadlocked", [
    ((3, 1, 2, 0), (1, 3)),  # step 3 announced first, step 0 last
    ((1, 3, 2, 0), (1, 2)),  # step 3 second, step 0 last
    ((3, 2, 1, 0), (1, 3)),  # reversed
])
def test_a_receiver_announcing_out_of_order_deadlocks_and_is_refused(positions, deadlocked):
    """Ring allreduce on 3 ranks, one chunk: pair 0->1 carries steps 0..3 and
    step 3 depends on step 0 (it went round the ring 0->1->2->0).

    Message i's buffer is announced after message i - window is applied, and
    so on back: a cycle needs that chain, stepping back by ``window``, to
    reach a message that waits for message i. With step 3 at index 0 and step
    0 at index 3: window 3 (3 -> 0) and window 1 (3 -> 2 -> 1 -> 0) close
    the cycle, window 2 (3 -> 1) does not. Every refusal names the pair.
    """
    schedule = build_schedule("allreduce", "ring", 3, 3)
    steps = issue_order(schedule)[(0, 1)]
    assert len(steps) == 4
    order = {(0, 1): [steps[k] for k in positions]}
    inputs = ops.make_inputs("allreduce", 3, 3, seed=0)
    for window in (1, 2, 3, 4):
        if window in deadlocked:
            with pytest.raises(ScheduleError, match=r"deadlocks on pair 0->1") as info:
                apply_protocol(schedule, "rendezvous", window, order=order)
            assert f"window {window}" in str(info.value)
            continue
        out = apply_protocol(schedule, "rendezvous", window, order=order)
        assert ops.count_wrong("allreduce", execute(out, inputs),
                               ops.expected("allreduce", inputs)) == 0


# ---------------------------------------------------------- zero-byte transfers


def _hand(transfers, ranks=3, count=4):
    return Schedule(op="allreduce", algorithm="hand", ranks=ranks, count=count,
                    work_elems=count, transfers=transfers)


def test_zero_byte_transfers_in_reference_races_and_simulator():
    token = Transfer(0, 1, 0, (0, 0), (0, 0), "copy")
    data = Transfer(1, 0, 1, (0, 4), (0, 4), "reduce", deps=(0,))
    schedule = _hand([token, data], ranks=2)
    schedule.validate()
    inputs = ops.make_inputs("allreduce", 2, 4, seed=3)
    for out in [execute(schedule, inputs)] + execute_random(schedule, inputs, runs=3):
        np.testing.assert_array_equal(out[1], inputs[0] + inputs[1])  # rank 1 got the sum
    assert find_races(schedule) == []  # no elements, no accesses
    # simulator: the token holds no port time and arrives alpha later; the
    # data then takes 16 bytes x b and alpha: a + 16b + a
    a, b = 100.0, 0.5
    assert simulate_time_us(schedule, a, b) == pytest.approx(a + 16 * b + a)


def test_a_token_does_not_queue_behind_data_on_a_busy_port():
    """A zero-byte transfer holds no port in the port model (simulate.py).

    Rank 1 sends 16 bytes to rank 2 and, ready at the same time, a token to
    rank 0: both leave by rank 1's egress, but a notification is one small
    frame the kernel slips between data packets, so it arrives at a, not at
    16b + a; 'after' (zero bytes, 0 -> 2, waiting for the token) at 2a.
    """
    data = Transfer(0, 1, 2, (0, 4), (0, 4), "copy")
    token = Transfer(1, 1, 0, (0, 0), (0, 0), "copy")
    after = Transfer(2, 0, 2, (0, 0), (0, 0), "copy", deps=(1,))  # observes the token
    a, b = 100.0, 0.5
    # data arrives at 16b + a = 108; 'after' at 2a = 200
    assert simulate_time_us(_hand([data, token, after]), a, b) == pytest.approx(2 * a)
    alone = _hand([Transfer(0, 1, 0, (0, 0), (0, 0), "copy"),
                   Transfer(1, 0, 2, (0, 0), (0, 0), "copy", deps=(0,))])
    assert simulate_time_us(alone, a, b) == pytest.approx(2 * a)


# ------------------------------------------------------------------- timing


def _ring(p, k, m_bytes):
    """Ring allreduce on p ranks, k chunks, every message exactly m_bytes."""
    return build_schedule("allreduce", "ring", p, p * k * m_bytes // ops.ITEMSIZE, nchunks=k)


A_US, B_US = 1000.0, 0.0008  # 1 ms, 10 Gbit/s (0.0008 us per byte)
M = 4000  # bytes per message: m b = 3.2 us, latency-bound (a >= m b)


@pytest.mark.parametrize("p", [2, 4])
def test_rendezvous_ring_closed_forms(p):
    """Uniform links, a >= m b; S = 2(p-1) steps, m bytes per message, mb = m b.

    Eager, K chunks (model.py): S(a + mb) + (K-1) mb -- chunk 0 goes round,
    chunk 1 one message behind.

    Rendezvous, K = 1, window 2. Tokens of steps 0 and 1 leave at t=0 and
    arrive at a. Step 0 is sent at a and arrives at A_0 = 2a + mb; step s
    arrives at A_s = a + (s+1)(a + mb). The token of step s >= 2 on pair
    (p, q) leaves q when step s-2 from p arrived (A_{s-2}); q's egress is busy
    with q's own step s-1 until A_{s-2} + mb, so the token arrives at
    A_{s-2} + mb + a = A_{s-1}: exactly when p has step s-1 to build on.
    Never late, so T = a + S(a + mb): eager plus the first notification.

    Rendezvous, K = 1, window 1: step s's token leaves q when step s-1
    arrived and p sends a later: every step costs 2a + mb, T = S(2a + mb).

    Rendezvous, K = 2, window 2 (gloo): a pair's messages in issue order are
    (step s, chunk c) = 2s + c; message i's token waits for message i-2, the
    same chunk's previous step *on the same pair*. Chunk 0 step 0 is sent at
    a, chunk 1 step 0 at a + mb (same egress): arrivals 2a + mb, 2a + 2mb.
    By induction, (s, 0) arrives at (2s+2)a + (s+1)mb and (s, 1) at
    (2s+2)a + (s+2)mb: the token of (s+1, c) leaves when (s, c) arrived, on
    idle ports (a >= mb), and arrives a later, which is when (s+1, c) goes
    (chunk 1 right behind chunk 0 on the egress). So T = 2Sa + (S+1)mb: a
    round trip per step.

    Rendezvous, K = 2, window 1: a pair sends one message per round trip:
    T = KS(2a + mb).

    Window >= KS (all of a pair's buffers announced at the start): the
    tokens arrive at a, then the eager schedule runs: T = a + eager.
    """
    a, b, mb = A_US, B_US, M * B_US
    S = 2 * (p - 1)
    sim = lambda k, w=None: simulate_time_us(  # noqa: E731
        _ring(p, k, M) if w is None else apply_protocol(_ring(p, k, M), "rendezvous", w), a, b)
    approx = lambda x: pytest.approx(x, rel=1e-12)  # noqa: E731
    assert sim(1) == approx(S * (a + mb))
    assert sim(2) == approx(S * (a + mb) + mb)
    assert sim(1, 2) == approx(a + S * (a + mb))
    assert sim(1, 1) == approx(S * (2 * a + mb))
    assert sim(2, 2) == approx(2 * S * a + (S + 1) * mb)
    assert sim(2, 1) == approx(2 * S * (2 * a + mb))
    assert sim(2, 2 * S) == approx(a + S * (a + mb) + mb)
    # the numbers, for p = 4 (S = 6, mb = 3.2): eager 6022.4 us, gloo-like 12022.4 us
    if p == 4:
        assert (sim(2), sim(2, 2)) == (approx(6022.4), approx(12022.4))


def test_latency_bound_ratio_is_the_round_trip():
    """a = 1 ms, b = 0.0008 us/B, 4 ranks, 4 MiB, gloo's segments (K = 2).

    m = 4 MiB / (4 x 2) = 512 KiB, mb = 524288 x 0.0008 = 419.4304 us < a.
    Eager: S(a + mb) + mb = 6 x 1419.4304 + 419.4304 = 8936.0128 us.
    Rendezvous: 2Sa + (S+1)mb = 12000 + 7 x 419.4304 = 14936.0128 us.
    Ratio 1.671; a step's round trip over its one-way trip predicts
    (2a + mb)/(a + mb) = 2419.4304/1419.4304 = 1.705, and 2 as mb/a -> 0
    (gloo measured about 2x our eager ring over 1 ms links).
    """
    a, b = A_US, B_US
    count = _allreduce_count(4 * MiB)
    gloo = build_schedule("allreduce", "ring", 4, count, **gloo_ring_params(4))
    default = build_schedule("allreduce", "ring", 4, count)  # chunk_bytes 512 KiB: also K = 2
    assert [t.src_slice for t in default.transfers] == [t.src_slice for t in gloo.transfers]
    mb = 512 * 1024 * b
    eager = simulate_time_us(gloo, a, b)
    rdv = simulate_time_us(apply_protocol(gloo, "rendezvous"), a, b)
    assert eager == pytest.approx(6 * (a + mb) + mb) == pytest.approx(8936.0128)
    assert rdv == pytest.approx(12 * a + 7 * mb) == pytest.approx(14936.0128)
    round_trip = (2 * a + mb) / (a + mb)
    assert rdv / eager == pytest.approx(1.6714, abs=1e-4)
    assert abs(rdv / eager - round_trip) / round_trip < 0.02
    # more latency-bound: the ratio tends to 2
    tiny = build_schedule("allreduce", "ring", 4, _allreduce_count(64 * 1024),
                          **gloo_ring_params(4))
    ratio = (simulate_time_us(apply_protocol(tiny, "rendezvous"), a, b)
             / simulate_time_us(tiny, a, b))
    assert 1.98 < ratio < 2.0


# (size MiB, eager us, rendezvous us)
TWO_SITES = [
    (4, 6355.4432, 14936.0128),
    (16, 21132.6592, 23744.0512),
    (64, 81530.6368, 82530.6368),
]


@pytest.mark.parametrize("size_mib,eager_us,rdv_us", TWO_SITES)
def test_two_sites_gloo_ring(size_mib, eager_us, rdv_us):
    """Ranks 0,1 at site A, 2,3 at site B, ring 0->1->2->3->0 (gloo's rank order).

    Local (0 us, 0.0008 us/B), WAN (1000 us, 0.0008 us/B) with one shared
    link per direction (site_link's default). m = size/8, mb = m x 0.0008.

    Rendezvous (notifications hold no port): a message on a pair waits for
    the round trip on *that* pair after the same chunk's previous step, so
    the WAN edge pays a round trip at every one of the S = 6 steps (a
    topology-aware order saves nothing): T = max(12 aW + 7 mb, 12 mb + 2 aW)
    -- 4 MiB: 12000 + 7 x 419.4304; 16 MiB: 12000 + 7 x 1677.7216; 64 MiB:
    bandwidth-bound, 12 x 6710.8864 + 2000 (eager: 12 mb + aW).
    """
    site_of = {0: 0, 1: 0, 2: 1, 3: 1}
    link = site_link(site_of, local=(0.0, B_US), wan=(A_US, B_US))
    schedule = build_schedule("allreduce", "ring", 4, _allreduce_count(size_mib * MiB),
                              **gloo_ring_params(4))
    rdv = apply_protocol(schedule, "rendezvous")
    mb = size_mib * MiB / 8 * B_US
    approx = lambda x: pytest.approx(x, rel=1e-9)  # noqa: E731
    assert simulate_time_us(schedule, link=link) == approx(eager_us)
    assert simulate_time_us(rdv, link=link) == approx(rdv_us) == approx(
        max(12 * A_US + 7 * mb, 12 * mb + 2 * A_US))
