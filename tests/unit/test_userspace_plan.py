"""Unit tests for the pure parts of testbed.shaping.userspace: queue plan and queue length."""

from __future__ import annotations

import json
import math

import pytest

from testbed.errors import InputError
from testbed.lab.plan import WIRE_PORT_A, WIRE_PORT_B, make_plan
from testbed.profile import LinkProfile
from testbed.shaping import userspace
from testbed.shaping.userspace import (
    ASSUMED_RATE_BPS,
    MAX_LEN_CAP,
    MAX_LEN_FLOOR,
    _max_len,
    _rule,
    queue_plan,
)
from testbed.topologies import build_topology

LAB = "unit-us"


def _pair_plan(profile):
    links = {} if profile is None else {"link": profile}
    return make_plan(build_topology("pair", {}), LAB, "10.202.0.0/24", links)


def _where(queue: dict):
    return queue["direction"], queue["ifname"], queue["queue_num"]


def test_all_names_exist():
    for name in userspace.__all__:
        assert hasattr(userspace, name), name


def test_ports_are_the_plans():
    assert (WIRE_PORT_A, WIRE_PORT_B) == ("port-a", "port-b")


# --------------------------------------------------------------- queue plan


def test_both_directions_impaired():
    plan = _pair_plan({"rate": "100Mbit", "delay": "10ms", "jitter": "1ms"})
    queues = queue_plan(plan, seed=0)
    wire = plan.links[0].wire
    assert list(queues) == [wire]
    forward, reverse = queues[wire]
    assert _where(forward) == ("forward", "port-a", 1)
    assert _where(reverse) == ("reverse", "port-b", 2)
    for q in (forward, reverse):
        assert q["link"] == "link" and q["link_id"] == 0 and q["node"] == "_w0"
        assert q["profile"]["delay_ms"] == 10.0 and q["profile"]["jitter_ms"] == 1.0
    json.dumps(queues)  # goes into the delay line's config file


def test_forward_only():
    plan = _pair_plan({"rate": "100Mbit", "delay": "10ms", "reverse": {"delay": "0ms"}})
    (queue,), = queue_plan(plan).values()
    assert _where(queue) == ("forward", "port-a", 1)


def test_reverse_only():
    plan = _pair_plan({"reverse": {"loss": "1%"}})
    (queue,), = queue_plan(plan).values()
    assert _where(queue) == ("reverse", "port-b", 1)
    assert queue["profile"]["loss_pct"] == 1.0


def test_rate_only_link_has_a_wire_but_no_queue():
    plan = _pair_plan({"rate": "100Mbit"})
    assert plan.links[0].wire is not None
    assert queue_plan(plan) == {}


def test_unshaped_link_has_no_queue():
    assert queue_plan(_pair_plan(None)) == {}


@pytest.mark.parametrize(
    "field,value", [("corrupt", "1%"), ("reorder", "5%"), ("loss", "0.5%")]
)
def test_each_impairment_makes_a_queue(field, value):
    profile = {"delay": "5ms", field: value}
    queues = queue_plan(_pair_plan(profile))
    assert len(next(iter(queues.values()))) == 2


def test_gilbert_elliott_parameters_in_the_queue():
    plan = _pair_plan({"loss": "1%", "loss_model": "gilbert-elliott", "loss_burst": 4})
    queue = next(iter(queue_plan(plan).values()))[0]
    ge = queue["profile"]["ge"]
    assert ge["r"] == pytest.approx(0.25)
    assert ge["p"] == pytest.approx(0.01 * 0.25 / 0.99)


def test_random_loss_has_no_ge_parameters():
    plan = _pair_plan({"loss": "1%"})
    queue = next(iter(queue_plan(plan).values()))[0]
    assert "ge" not in queue["profile"]


def test_duplicate_rejected_naming_the_field():
    with pytest.raises(InputError) as info:
        queue_plan(_pair_plan({"delay": "5ms", "duplicate": "1%"}))
    assert info.value.field == "links.link.duplicate"
    assert "netem" in info.value.message


def test_duplicate_only_reverse_rejected():
    with pytest.raises(InputError) as info:
        queue_plan(_pair_plan({"reverse": {"duplicate": "1%"}}))
    assert info.value.field == "links.link.duplicate"


def test_seeds_differ_per_direction_link_and_run():
    plan = make_plan(build_topology("two-clouds", {"path": "transit"}), LAB, "10.202.0.0/16", {})
    seeds = [q["seed"] for qs in queue_plan(plan, seed=7).values() for q in qs]
    assert len(seeds) == 10 and len(set(seeds)) == 10
    other = [q["seed"] for qs in queue_plan(plan, seed=8).values() for q in qs]
    assert not set(seeds) & set(other)
    assert seeds == [q["seed"] for qs in queue_plan(plan, seed=7).values() for q in qs]


def test_transit_plan_queues_per_wire():
    plan = make_plan(build_topology("two-clouds", {"path": "transit"}), LAB, "10.202.0.0/16", {})
    queues = queue_plan(plan)
    hop_wires = {l.wire for l in plan.links if l.name == "transit-hop"}
    assert set(queues) == hop_wires  # the site fabric is unimpaired: no queues there
    for wire, qs in queues.items():
        assert [q["queue_num"] for q in qs] == [1, 2]
        assert {q["node"] for q in qs} == {wire.rsplit(".", 1)[1]}


def test_iptables_rule_targets_the_queue():
    plan = _pair_plan({"delay": "5ms"})
    queue = next(iter(queue_plan(plan).values()))[1]
    rule = _rule(queue, LAB)
    assert rule[rule.index("--physdev-in") + 1] == "port-b"
    assert rule[rule.index("--queue-num") + 1] == "2"
    assert "--queue-bypass" not in rule  # a dead line must not leave the link unimpaired
    assert all(isinstance(a, str) for a in rule)


# ------------------------------------------------------------------ _max_len


def test_max_len_floor():
    # 100 Mbit/s, 1 ms: 1e8 / 8 / 1500 x 0.001 x 2 = 16.7 packets -> floor 1024
    assert _max_len(LinkProfile(rate_bps=100_000_000, delay_ms=1.0), 1500) == MAX_LEN_FLOOR


def test_max_len_cap():
    # unshaped (assumed 10 Gbit/s), 1 s: 1.25e9 / 1500 x 1 x 2 = 1.67M -> cap
    assert _max_len(LinkProfile(delay_ms=1000.0), 1500) == MAX_LEN_CAP


def test_max_len_middle():
    # 1 Gbit/s, 100 ms: 1.25e8 / 1500 x 0.1 x 2 = 16,666.7 -> 16,667
    assert _max_len(LinkProfile(rate_bps=1_000_000_000, delay_ms=100.0), 1500) == 16_667
    # plus 4 x 5 ms jitter: hold 120 ms -> 20,000
    profile = LinkProfile(rate_bps=1_000_000_000, delay_ms=100.0, jitter_ms=5.0)
    assert _max_len(profile, 1500) == 20_000


def test_max_len_unshaped_assumes_10gbit():
    # 10 Gbit/s, 10 ms, MTU 9000: 1.25e9 / 9000 x 0.01 x 2 = 2,777.8 -> 2,778
    assert ASSUMED_RATE_BPS == 10_000_000_000
    assert _max_len(LinkProfile(delay_ms=10.0), 9000) == 2_778


def test_max_len_small_mtu_counts_as_576():
    # MTU 100 would inflate the count; 576 is used: 1.25e8 / 576 x 0.1 x 2 = 43,402.8
    profile = LinkProfile(rate_bps=1_000_000_000, delay_ms=100.0)
    assert _max_len(profile, 100) == math.ceil(1.25e8 / 576 * 0.1 * 2) == 43_403


@pytest.mark.parametrize("delay_ms", [0.0, 0.5, 5.0, 50.0, 500.0, 5000.0])
@pytest.mark.parametrize("rate_bps", [None, 1_000_000, 1_000_000_000, 100_000_000_000])
def test_max_len_bounds(delay_ms, rate_bps):
    profile = LinkProfile(rate_bps=rate_bps, delay_ms=delay_ms, jitter_ms=delay_ms / 10)
    value = _max_len(profile, 1500)
    assert isinstance(value, int)
    assert MAX_LEN_FLOOR <= value <= MAX_LEN_CAP
