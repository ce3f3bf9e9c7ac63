"""Unit tests for labs across machines: placement, plan slices, the underlay MTU check.

No kernel and no ssh: the plan is cut in memory and every slice is checked
against the whole plan (each node on exactly one machine, each crossing link
in exactly two halves that shape opposite directions).
"""

from __future__ import annotations

import pytest

from testbed.cluster.machines import Machine, node_machines, parse_machines, place_sites, sites_of
from testbed.cluster.slicing import (
    VXLAN_OVERHEAD_BYTES, check_underlay_mtu, cross_links, link_vni, slice_plans)
from testbed.errors import EnvironmentProblem, InputError
from testbed.lab.plan import LabPlan, make_plan
from testbed.profile import resolve_link
from testbed.topologies import build_topology

LAB = "unit-cluster"
BLOCK = "10.200.0.0/16"
UNDERLAY = {"m1": "10.200.255.11", "m2": "10.200.255.12", "m3": "10.200.255.13"}


def _plan(**params) -> LabPlan:
    links = {"site-fabric": "site-fabric", "direct": "direct-interconnect", "transit-hop": "internet-transit"}
    return make_plan(build_topology("two-clouds", params), LAB, BLOCK, links, strict_links=False)


def _placed(plan, machines=("m1", "m2"), placement=None):
    return node_machines(plan, place_sites(sites_of(plan), list(machines), placement))


# ------------------------------------------------------------------ machines


def test_machines_accept_user_at_host_and_mappings():
    machines = parse_machines({"m1": "ubuntu@192.0.2.10",
                               "m2": {"address": "192.0.2.11", "key": "/root/.ssh/id", "python": "/opt/v/bin/python"}})
    assert machines[0] == Machine("m1", "192.0.2.10", user="ubuntu", python=machines[0].python)
    assert machines[1].user == "root" and machines[1].key == "/root/.ssh/id"
    assert machines[1].python == "/opt/v/bin/python"


@pytest.mark.parametrize("value, field", [
    ({"M1": "a@h"}, "machines.M1"),
    ({"m1": {"user": "x"}}, "machines.m1.address"),
    ({"m1": {"address": "h", "colour": 1}}, "machines.m1.colour"),
    ({"m1": {"address": "h", "key": "relative/key"}}, "machines.m1.key"),
    ({"m1": {"address": "h", "port": 0}}, "machines.m1.port"),
    ({"m1": "h;rm -rf /"}, "machines.m1.address"),
    ({"m1": "h", "m2": "h"}, "machines.m2.address"),
    (["m1"], "machines"),
])
def test_bad_machines_name_the_field(value, field):
    with pytest.raises(InputError) as err:
        parse_machines(value)
    assert err.value.field == field


def test_default_placement_is_one_site_per_machine_round_robin():
    assert place_sites(["cw", "gcp", "transit"], ["m1", "m2", "m3"], None) == {
        "cw": "m1", "gcp": "m2", "transit": "m3"}
    assert place_sites(["cw", "gcp", "transit"], ["m1", "m2"], None) == {
        "cw": "m1", "gcp": "m2", "transit": "m1"}


def test_placement_wins_and_the_rest_go_to_free_machines():
    assert place_sites(["cw", "gcp", "transit"], ["m1", "m2", "m3"], {"cw": "m3"}) == {
        "cw": "m3", "gcp": "m1", "transit": "m2"}


@pytest.mark.parametrize("placement, field", [({"aws": "m1"}, "placement.aws"),
                                              ({"cw": "m9"}, "placement.cw")])
def test_bad_placement_names_the_field(placement, field):
    with pytest.raises(InputError) as err:
        place_sites(["cw", "gcp"], ["m1", "m2"], placement)
    assert err.value.field == field


# ------------------------------------------------------------------ slices


def test_routers_live_with_their_site_so_only_inter_site_links_cross():
    plan = _plan(path="direct", hosts_per_site=2)
    where = _placed(plan)
    assert where["cw-r1"] == where["cw-h1"] == where["cw-s1"] == "m1"
    assert where["gcp-r1"] == where["gcp-h2"] == "m2"
    crossing = cross_links(plan, where)
    assert [(l.a, l.b, l.name) for l in crossing] == [("cw-r1", "gcp-r1", "direct")]


@pytest.mark.parametrize("path", ["direct", "transit"])
def test_slices_partition_the_plan(path):
    plan = _plan(path=path, transit_hops=3)
    where = _placed(plan, ("m1", "m2", "m3"))
    slices = slice_plans(plan, where, UNDERLAY)
    owners = {}
    for machine, doc in slices.items():
        for name in doc["nodes"]:
            assert name not in owners, f"{name} on {owners.get(name)} and {machine}"
            owners[name] = machine
        assert doc["block"] == plan.block and doc["lab"] == LAB
    assert owners == where
    crossing = {l.id for l in cross_links(plan, where)}
    halves = {}
    for machine, doc in slices.items():
        for link in doc["links"]:
            if link.get("tunnel"):
                halves.setdefault(link["id"], []).append((machine, link))
            else:  # a whole link: both ends here
                assert where[link["a"]] == where[link["b"]] == machine
    assert set(halves) == crossing
    for link_id, pair in halves.items():
        (m_a, a), (m_b, b) = sorted(pair, key=lambda item: item[1]["tunnel"]["end"])
        assert (a["tunnel"]["end"], b["tunnel"]["end"]) == ("a", "b")
        assert a["tunnel"]["vni"] == b["tunnel"]["vni"] == link_vni(LAB, link_id)
        assert (a["tunnel"]["local"], a["tunnel"]["remote"]) == (UNDERLAY[m_a], UNDERLAY[m_b])
        assert (b["tunnel"]["local"], b["tunnel"]["remote"]) == (UNDERLAY[m_b], UNDERLAY[m_a])
        assert a["wire"] != b["wire"]  # one box: both halves share /run/netns


def test_each_direction_is_shaped_once_on_its_sending_side():
    plan = _plan(path="transit", transit_hops=1)
    where = _placed(plan)
    slices = slice_plans(plan, where, UNDERLAY)
    whole = {l.id: l.spec for l in plan.links}
    for doc in slices.values():
        for link in doc["links"]:
            if not link.get("tunnel"):
                continue
            spec = resolve_link(link["profile"], "t")
            full = whole[link["id"]]
            if link["tunnel"]["end"] == "a":
                assert spec.forward == full.forward
                assert not spec.reverse.is_shaped and not spec.reverse.has_impairment
            else:
                assert spec.reverse == full.reverse
                assert not spec.forward.is_shaped and not spec.forward.has_impairment
            assert link["tunnel"]["rtt_ms"] == full.forward.delay_ms + full.reverse.delay_ms


def test_a_slice_reads_back_as_a_plan():
    plan = _plan(path="direct")
    slices = slice_plans(plan, _placed(plan), UNDERLAY)
    part = LabPlan.from_dict(slices["m2"])
    assert set(part.nodes) == {"gcp-h1", "gcp-r1", "gcp-s1"}
    half = [l for l in part.links if l.tunnel]
    assert len(half) == 1 and half[0].tunnel["end"] == "b" and half[0].wire.endswith("b")
    assert part.to_dict()["links"] == slices["m2"]["links"]


def test_vni_is_per_link_and_fits_24_bits():
    vnis = {link_vni(LAB, i) for i in range(4096)}
    assert len(vnis) == 4096 and max(vnis) < 1 << 24 and min(vnis) > 0
    with pytest.raises(EnvironmentProblem):
        link_vni(LAB, 4096)


# ------------------------------------------------------------------ MTU


def test_jumbo_link_over_a_1500_underlay_is_refused_naming_the_fix():
    plan = _plan(path="direct")  # direct-interconnect: MTU 9000
    where = _placed(plan)
    with pytest.raises(EnvironmentProblem) as err:
        check_underlay_mtu(plan, where, {("m1", "m2"): 1500})
    assert err.value.exit_code == 3
    assert "raise the underlay MTU to 9050 or set the link's mtu to 1450" in str(err.value)
    assert "direct" in str(err.value)


def test_mtu_that_fits_passes_and_the_pair_is_unordered():
    plan = _plan(path="direct")
    where = _placed(plan)
    check_underlay_mtu(plan, where, {("m2", "m1"): 9000 + VXLAN_OVERHEAD_BYTES})
    with pytest.raises(EnvironmentProblem):
        check_underlay_mtu(plan, where, {("m2", "m1"): 9000 + VXLAN_OVERHEAD_BYTES - 1})


def test_links_inside_one_machine_need_no_underlay():
    plan = _plan(path="direct")
    where = {n: "m1" for n in plan.nodes}
    check_underlay_mtu(plan, where, {("m1", "m2"): 576})
    assert cross_links(plan, where) == []


def test_a_scenario_across_machines_refuses_steps_that_need_every_node_here():
    from testbed.scenario import load_scenario
    from testbed.runner import resolve_scenario

    path = resolve_scenario("across-machines")
    assert load_scenario(path, quick=True).placement == {"cw": "m1", "gcp": "m2"}
    with pytest.raises(InputError) as err:
        load_scenario(path, overrides=["measure.collective.op=allreduce"])
    assert err.value.field == "measure.collective"
    with pytest.raises(InputError) as err:
        load_scenario(path, overrides=["machines.m1=root@192.0.2.10", "placement.cw=m9"])
    assert err.value.field == "placement.cw"
