"""The sweep's options and model choice (testbed.collectives.bench), without a lab.

* bad ``order``/``nchunks``/``protocol``/``window`` raise InputError naming
  the field before anything touches a lab;
* :data:`~testbed.collectives.bench.GLOO_RING` builds gloo's ring
  (:func:`~testbed.collectives.protocol.gloo_ring_params`);
* run_sweep on a stand-in lab (two-clouds, 2 + 2 hosts, direct path, its real
  plan) and a stand-in engine (the in-memory reference executor): an eager
  row's model is the closed form, a rendezvous row's is the simulator's time
  of the schedule that ran, at real scale; rows say which protocol ran;
* gloo's model is that same simulated rendezvous ring.
"""

from __future__ import annotations

import pytest

from testbed.collectives import bench, gloo, ops
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.engine import place_ranks
from testbed.collectives.protocol import apply_protocol, gloo_ring_params
from testbed.collectives.reference import execute
from testbed.errors import InputError
from testbed.lab.node import Node
from testbed.lab.plan import make_plan
from testbed.tcpmodel import HostTcp
from testbed.topologies import build_topology

MiB = 1024 * 1024
SIZES = [4 * MiB, 16 * MiB, 64 * MiB]
# the two-site gloo ring worked by hand in test_collectives_protocol.py (TWO_SITES):
# WAN (1000 us, 0.0008 us/B), 2 + 2 ranks, rendezvous window 2, two segments per block
RENDEZVOUS_US = {4 * MiB: 14936.0128, 16 * MiB: 23744.0512, 64 * MiB: 82530.6368}
SCALE = 50


class StandInLab:
    """What run_sweep reads of a lab: its plan, scale, hosts and nodes (nothing is created)."""

    def __init__(self, scale: float = SCALE):
        topo = build_topology("two-clouds", {"hosts_per_site": 2, "path": "direct"})
        self.plan = make_plan(topo, "unit-bench", "10.200.0.0/16", {})
        self.doc = {"plan": self.plan.to_dict()}
        self.scale = scale

    def node(self, name: str) -> Node:
        info = self.doc["plan"]["nodes"][name]
        return Node(name=name, netns=info["netns"], ip=info["ip"], role=info["role"],
                    site=info["site"], intfs=tuple(i["name"] for i in info["intfs"]))

    def hosts(self):
        nodes = self.doc["plan"]["nodes"]
        return [self.node(n) for n in sorted(nodes) if nodes[n]["role"] == "host"]


class StandInEngine:
    """The engine's interface, run by the reference executor; every iteration takes 1 ms."""

    schedules: list = []

    def __init__(self, nodes, rank_host, nsocks=1, buffsize_bytes=0, cc=None):
        self.ranks = len(rank_host)

    def run(self, schedule, inputs, warmup=1, iters=5):
        StandInEngine.schedules.append(schedule)
        return {"times_s": [1e-3] * iters, "outputs": execute(schedule, inputs), "cpu_s": 0.5e-3 * iters}

    def bytes_by_pair(self):
        return {}

    def close(self):
        pass


#: hosts whose socket buffers never bound a connection here: the link alone sets b
BIG_BUFFERS = HostTcp(rmem_max_bytes=1 << 30, wmem_max_bytes=1 << 30, congestion="cubic")


@pytest.fixture
def engine(monkeypatch):
    StandInEngine.schedules = []
    monkeypatch.setattr(bench, "CollectiveEngine", StandInEngine)
    monkeypatch.setattr(bench, "host_tcp", lambda node, cc=None: BIG_BUFFERS)
    return StandInEngine


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("kwargs,field", [
    ({"protocol": "lazy"}, "protocol"),
    ({"protocol": None}, "protocol"),
    ({"window": 0}, "window"),
    ({"window": True}, "window"),
    ({"window": "2"}, "window"),
    ({"protocol": "rendezvous", "window": -1}, "window"),
    ({"nchunks": 0}, "nchunks"),
    ({"nchunks": 2.0}, "nchunks"),
    ({"nchunks": 2, "chunk_bytes": 65536}, "nchunks"),
    ({"order": "sideways"}, "order"),
])
def test_bad_options_name_the_field_before_the_lab_is_touched(kwargs, field):
    with pytest.raises(InputError) as err:
        bench.run_sweep(None, "allreduce", "ring", [MiB], **kwargs)  # None: no lab read
    assert err.value.field == field
    with pytest.raises(InputError) as err:
        bench.check_options(**kwargs)
    assert err.value.field == field


def test_good_options_pass():
    bench.check_options("naive", None, 2, "rendezvous", 1)
    bench.check_options("topology", 65536, None, "eager", 2)


def test_nchunks_reaches_the_chunked_algorithms_only():
    groups = [[0, 1], [2, 3]]
    assert bench.algo_params("ring", groups, "naive", None, 3) == {"order": [0, 1, 2, 3], "nchunks": 3}
    assert bench.algo_params("hierarchical", groups, "topology", None, 3)["nchunks"] == 3
    assert "nchunks" not in bench.algo_params("rabenseifner", groups, "naive", None, 3)
    assert bench.algo_params("ring", groups, "naive", 65536) == {"order": [0, 1, 2, 3],
                                                                 "chunk_bytes": 65536}


def test_gloo_ring_keywords_build_gloos_ring():
    assert bench.GLOO_RING == {"order": "naive", "nchunks": 2, "protocol": "rendezvous", "window": 2}
    for groups in ([[0, 1], [2, 3]], [[0, 1, 2]], [[0], [1, 2], [3, 4, 5]]):
        ranks = sum(len(g) for g in groups)
        params = bench.algo_params("ring", groups, bench.GLOO_RING["order"], None,
                                   bench.GLOO_RING["nchunks"])
        assert params == gloo_ring_params(ranks)


# ------------------------------------------------------------------ models

def test_site_params_of_the_direct_path():
    lab = StandInLab()
    nodes = {h.name: h for h in lab.hosts()}
    rank_host = place_ranks(sorted(nodes), 1)
    groups, local, wan = bench.site_params(lab, nodes, rank_host)
    assert groups == [[0, 1], [2, 3]]
    assert wan == pytest.approx((1000.0, 0.0008))  # 1 ms, 10 Gbit/s
    assert local == pytest.approx((0.0, bench.UNSHAPED_BETA_US_PER_BYTE / SCALE))  # unshaped


@pytest.mark.parametrize("size", SIZES)
def test_simulated_model_is_at_real_scale(size):
    """The schedule of 1/K of the bytes, each costing K x beta, takes what the real one takes."""
    groups, local, wan = [[0, 1], [2, 3]], (0.0, 0.0008), (1000.0, 0.0008)
    real = build_schedule("allreduce", "ring", 4, ops.count_for_size("allreduce", size, 4),
                          **gloo_ring_params(4))
    sent = build_schedule("allreduce", "ring", 4, ops.count_for_size("allreduce", size // 64, 4),
                          **gloo_ring_params(4))
    rdv = lambda s: apply_protocol(s, "rendezvous", 2)  # noqa: E731
    assert bench.simulated_model_us(rdv(real), groups, local, wan) == pytest.approx(RENDEZVOUS_US[size])
    assert bench.simulated_model_us(rdv(sent), groups, local, wan, scale=64) == pytest.approx(
        RENDEZVOUS_US[size])


def test_eager_rows_keep_the_closed_form(engine):
    lab = StandInLab()
    rows = bench.run_sweep(lab, "allreduce", "ring", SIZES, iters=2)
    nodes = {h.name: h for h in lab.hosts()}
    groups, local, wan = bench.site_params(lab, nodes, place_ranks(sorted(nodes), 1))
    params = bench.algo_params("ring", groups, "topology", None)
    for size, row, schedule in zip(SIZES, rows, engine.schedules):
        assert (row["protocol"], row["window"], row["nchunks"], row["correct"]) == ("eager", None, None, True)
        assert "protocol" not in schedule.params  # no ready transfers
        assert all(t.elems for t in schedule.transfers)
        # chunks are not scaled: the model cuts the real size into as many chunks as the
        # lab cut the bytes it sent (one here), and then equals the simulator on them
        assert row["model_time_us"] == pytest.approx(bench._model_us(
            "allreduce", "ring", 4, size, bench._real_scale_chunks("ring", params, SCALE),
            groups, local, wan))
        k = sum(1 for t in schedule.transfers if t.src == 0) // (2 * 3)  # 2(p-1) messages a chunk
        real = build_schedule("allreduce", "ring", 4, ops.count_for_size("allreduce", size, 4),
                              order=params["order"], nchunks=k)
        assert row["model_time_us"] == pytest.approx(
            bench.simulated_model_us(real, groups, local, wan), rel=1e-3)
        assert row["sent_bytes"] == pytest.approx(size / SCALE, rel=1e-3)
        assert row["time_us"] == pytest.approx(1000.0)
        assert row["engine_cpu_share"] == 0.5  # CPU over wall time of the timed iterations


def test_rendezvous_rows_are_modelled_by_the_simulator(engine):
    lab = StandInLab()
    rows = bench.run_sweep(lab, "allreduce", "ring", SIZES, iters=2, **bench.GLOO_RING)
    eager = [r["model_time_us"] for r in bench.run_sweep(lab, "allreduce", "ring", SIZES, iters=1)]
    nodes = {h.name: h for h in lab.hosts()}
    rank_host = place_ranks(sorted(nodes), 1)
    for size, row, schedule, eager_us in zip(SIZES, rows, engine.schedules, eager):
        assert (row["protocol"], row["window"], row["nchunks"], row["order"]) == (
            "rendezvous", 2, 2, "naive")
        assert row["correct"], row
        assert schedule.params["protocol"] == "rendezvous" and schedule.params["window"] == 2
        tokens = [t for t in schedule.transfers if not t.elems]
        assert len(tokens) == len(schedule.transfers) // 2 == 2 * 2 * 3 * 4  # one per message
        # the hand-worked two-site figures: local beta (unshaped) does not matter here
        assert row["model_time_us"] == pytest.approx(RENDEZVOUS_US[size], rel=1e-3)
        assert row["sent_bytes"] == pytest.approx(size / SCALE, rel=1e-3)
        # gloo's rows get the same model (the same schedule for the same bytes)
        sent_count = ops.count_for_size("allreduce", row["sent_bytes"], 4)
        assert gloo._allreduce_model_us(lab, "allreduce", 4, sent_count, rank_host,
                                        nodes) == pytest.approx(row["model_time_us"])
    # latency-bound at 4 MiB: a round trip per step where eager pays one way (eager
    # with the one chunk per block the lab cut: 6389 us; 14936 / 6389 = 2.34)
    assert rows[0]["model_time_us"] / eager[0] == pytest.approx(2.34, abs=0.01)
    assert rows[2]["model_time_us"] / eager[2] == pytest.approx(1.01, abs=0.01)


def test_gloo_model_for_other_ops_and_one_rank():
    lab = StandInLab()
    nodes = {h.name: h for h in lab.hosts()}
    assert gloo._allreduce_model_us(lab, "allgather", 4, 1000, sorted(nodes), nodes) is None
    assert gloo._allreduce_model_us(lab, "allreduce", 1, 1000, ["cw-h1"], nodes) == 0.0
