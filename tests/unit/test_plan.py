"""Unit tests for testbed.lab.plan: address plan, routes and wires, no kernel.

Routing is checked with an independent oracle: a tiny hop-by-hop forwarder
(:func:`_forward`) that walks the planned routes the way the kernel would
(connected subnets first, then the longest matching static route) and must
reach every address of every other L3 node.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Dict, List, Optional

import pytest
from mininet.topo import Topo

from testbed.errors import InputError
from testbed.lab import plan as plan_module
from testbed.lab.plan import DEFAULT_MTU, LabPlan, make_plan
from testbed.profile import resolve_link
from testbed.topologies import build_topology

LAB = "unit-plan"
BLOCK = "10.200.0.0/16"


# ----------------------------------------------------------------- helpers


def _two_clouds(lab: str = LAB, block: str = BLOCK, links=None, **params) -> LabPlan:
    return make_plan(build_topology("two-clouds", params), lab, block, links or {})


def _pair(links=None, block: str = "10.201.7.0/24") -> LabPlan:
    return make_plan(build_topology("pair", {}), LAB, block, links or {})


def _addr(cidr: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Interface(cidr).ip


def _l3_nodes(plan: LabPlan) -> List[str]:
    return sorted(n for n, node in plan.nodes.items() if node.role != "switch")


def _address_owners(plan: LabPlan) -> Dict[ipaddress.IPv4Address, str]:
    owners: Dict[ipaddress.IPv4Address, str] = {}
    for node in plan.nodes.values():
        for intf in node.intfs:
            if intf.address:
                owners[_addr(intf.address)] = node.name
    return owners


def _forward(
    plan: LabPlan,
    src: str,
    dst: ipaddress.IPv4Address,
    owners: Optional[Dict[ipaddress.IPv4Address, str]] = None,
    max_hops: int = 32,
) -> List[str]:
    """Nodes a packet from ``src`` to ``dst`` visits, following the plan's routes."""
    if owners is None:
        owners = _address_owners(plan)
    path = [src]
    current = src
    for _ in range(max_hops):
        node = plan.nodes[current]
        if any(i.address and _addr(i.address) == dst for i in node.intfs):
            return path
        if len(path) > 1 and node.role != "router":
            raise AssertionError(f"host {current} asked to forward to {dst}: path {path}")
        attached = [
            ipaddress.IPv4Interface(i.address).network for i in node.intfs if i.address
        ]
        if any(dst in net for net in attached):
            next_hop = dst
        else:
            matches = [
                (ipaddress.IPv4Network(subnet), ipaddress.IPv4Address(via))
                for subnet, via in node.routes
                if dst in ipaddress.IPv4Network(subnet)
            ]
            if not matches:
                raise AssertionError(f"{current} has no route to {dst}: path {path}")
            _net, next_hop = max(matches, key=lambda m: m[0].prefixlen)
            if not any(next_hop in net for net in attached):
                raise AssertionError(f"{current}: next hop {next_hop} is not on-link")
        nxt = owners.get(next_hop)
        if nxt is None:
            raise AssertionError(f"{current}: next hop {next_hop} belongs to no node")
        path.append(nxt)
        current = nxt
    raise AssertionError(f"routing loop from {src} to {dst}: {path}")


def _segment_members(plan: LabPlan) -> Dict[int, list]:
    out: Dict[int, list] = {}
    for node in plan.nodes.values():
        for intf in node.intfs:
            if intf.segment is not None:
                out.setdefault(intf.segment, []).append(intf)
    return out


def _check_address_plan(plan: LabPlan) -> None:
    """Invariants every plan must hold, whatever the topology."""
    block = ipaddress.IPv4Network(plan.block)
    subnets = [ipaddress.IPv4Network(s) for s in plan.segments.values()]
    for i, a in enumerate(subnets):
        assert a.subnet_of(block), f"segment {a} outside block {block}"
        for b in subnets[i + 1:]:
            assert not a.overlaps(b), f"segments {a} and {b} overlap"
    seen = set()
    for seg, members in _segment_members(plan).items():
        net = ipaddress.IPv4Network(plan.segments[seg])
        for intf in members:
            iface = ipaddress.IPv4Interface(intf.address)
            assert iface.network == net, f"{intf.name} {iface} not in its segment {net}"
            assert iface.ip not in (net.network_address, net.broadcast_address), intf.address
            assert iface.ip not in seen, f"address {iface.ip} used twice"
            seen.add(iface.ip)
        routers = [_addr(i.address) for i in members if plan.nodes[i.node].role == "router"]
        hosts = [_addr(i.address) for i in members if plan.nodes[i.node].role == "host"]
        if routers and hosts:
            assert max(routers) < min(hosts), f"segment {net}: routers {routers} not lowest"
        if routers:
            assert min(routers) == net.network_address + 1
    for node in plan.nodes.values():
        for intf in node.intfs:
            if node.role == "switch":
                assert intf.address is None, f"switch port {intf.name} got an address"
            else:
                assert intf.address is not None, f"{intf.name} has no address"


def _site_intf(plan: LabPlan, site: str):
    """The site router's interface on its site fabric."""
    return next(i for i in plan.nodes[f"{site}-r1"].intfs if i.peer_node == f"{site}-s1")


def _check_full_reachability(plan: LabPlan, sources: Optional[List[str]] = None) -> None:
    """Every address of every L3 node is reachable from each of ``sources`` (default: all)."""
    owners = _address_owners(plan)
    for src in sources or _l3_nodes(plan):
        for address, owner in owners.items():
            path = _forward(plan, src, address, owners)
            assert path[-1] == owner, f"{src} -> {address} ended at {path[-1]}, not {owner}"


def test_all_names_exist():
    for name in plan_module.__all__:
        assert hasattr(plan_module, name), name


# -------------------------------------------------------------------- pair


def test_pair_unshaped_plan():
    plan = _pair()
    assert sorted(plan.nodes) == ["h1", "h2"]
    assert [n.role for n in plan.nodes.values()] == ["host", "host"]
    assert plan.nodes["h1"].netns == f"tb.{LAB}.h1"
    assert len(plan.links) == 1
    link = plan.links[0]
    assert (link.a, link.b, link.a_intf, link.b_intf, link.name) == (
        "h1", "h2", "h1-eth0", "h2-eth0", "link")
    assert not link.shaped
    assert link.wire is None
    assert link.mtu == DEFAULT_MTU


def test_pair_addresses_in_block_and_same_subnet():
    plan = _pair()
    block = ipaddress.IPv4Network("10.201.7.0/24")
    h1 = ipaddress.IPv4Interface(plan.nodes["h1"].intfs[0].address)
    h2 = ipaddress.IPv4Interface(plan.nodes["h2"].intfs[0].address)
    assert h1.ip in block and h2.ip in block
    assert h1.network == h2.network
    assert h1.ip != h2.ip
    assert plan.nodes["h1"].ip == str(h1.ip)
    assert plan.nodes["h1"].routes == [] and plan.nodes["h2"].routes == []
    assert list(plan.segments.values()) == [str(h1.network)]
    _check_address_plan(plan)
    _check_full_reachability(plan)


@pytest.mark.parametrize(
    "profile",
    [
        {"rate": "100Mbit"},  # rate only
        {"delay": "10ms"},  # impairment only
        {"loss": "1%"},
        {"reverse": {"delay": "5ms"}},  # one direction only
    ],
)
def test_pair_shaped_link_gets_a_wire(profile):
    plan = _pair({"link": profile})
    link = plan.links[0]
    assert link.shaped
    assert link.wire == f"tb.{LAB}._w0"
    assert link.spec == resolve_link(profile, "links.link")


def test_pair_profile_directions():
    plan = _pair({"link": {"rate": "100Mbit", "forward": {"delay": "7ms"}}})
    spec = plan.links[0].spec
    assert spec.forward.delay_ms == 7.0 and spec.reverse.delay_ms == 0.0
    assert spec.forward.rate_bps == spec.reverse.rate_bps == 100_000_000


def test_pair_mtu_only_is_not_shaped_but_sets_the_mtu():
    plan = _pair({"link": {"mtu": 9000}})
    link = plan.links[0]
    assert link.wire is None
    assert link.mtu == 9000
    assert {i.mtu for n in plan.nodes.values() for i in n.intfs} == {9000}


def test_asymmetric_mtu_rejected():
    with pytest.raises(InputError) as info:
        _pair({"link": {"forward": {"mtu": 9000}, "reverse": {"mtu": 1500}}})
    assert info.value.field == "links.link.mtu"


def test_bad_link_profile_names_the_field():
    with pytest.raises(InputError) as info:
        _pair({"link": {"delay": "-5ms"}})
    assert info.value.field == "links.link.delay"


def test_plan_to_dict_is_json():
    plan = _pair({"link": {"rate": "1Gbit", "delay": "1ms"}})
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["lab"] == LAB
    assert doc["links"][0]["wire"] == f"tb.{LAB}._w0"
    assert doc["links"][0]["profile"] == {"rate": "1Gbit", "delay": "1ms"}
    assert doc["nodes"]["h2"]["ip"] == plan.nodes["h2"].ip


def test_plan_node_lookup():
    plan = _pair()
    assert plan.node("h1").name == "h1"
    with pytest.raises(InputError) as info:
        plan.node("h9")
    assert "h9" in info.value.message
    assert [n.name for n in plan.hosts()] == ["h1", "h2"]


# ------------------------------------------------------- two-clouds direct


def test_two_clouds_direct_nodes_and_links():
    plan = _two_clouds()
    assert sorted(plan.nodes) == ["cw-h1", "cw-r1", "cw-s1", "gcp-h1", "gcp-r1", "gcp-s1"]
    roles = {n: p.role for n, p in plan.nodes.items()}
    assert roles == {"cw-h1": "host", "cw-r1": "router", "cw-s1": "switch",
                     "gcp-h1": "host", "gcp-r1": "router", "gcp-s1": "switch"}
    assert plan.nodes["cw-h1"].site == "cw" and plan.nodes["gcp-r1"].site == "gcp"
    names = sorted(l.name for l in plan.links)
    assert names == ["direct"] + ["site-fabric"] * 4
    direct = next(l for l in plan.links if l.name == "direct")
    assert {direct.a, direct.b} == {"cw-r1", "gcp-r1"}
    assert direct.spec == resolve_link("direct-interconnect", "x")
    assert direct.wire is not None  # 10 Gbit, 1 ms: shaped
    for link in plan.links:
        if link.name == "site-fabric":
            assert link.wire is None, "site fabric is unshaped: no wire"


def test_two_clouds_direct_mtu_9000_everywhere():
    plan = _two_clouds()
    assert {l.mtu for l in plan.links} == {9000}
    assert {i.mtu for n in plan.nodes.values() for i in n.intfs} == {9000}


def test_two_clouds_direct_address_plan():
    plan = _two_clouds()
    assert len(plan.segments) == 3  # two site fabrics and the direct link
    _check_address_plan(plan)
    cw_r1 = plan.nodes["cw-r1"]
    site_intf = next(i for i in cw_r1.intfs if i.peer_node == "cw-s1")
    net = ipaddress.IPv4Interface(site_intf.address).network
    assert _addr(site_intf.address) == net.network_address + 1


def test_two_clouds_direct_routes():
    plan = _two_clouds()
    site_net = {}
    router_on_site = {}
    for site in ("cw", "gcp"):
        intf = next(i for i in plan.nodes[f"{site}-r1"].intfs if i.peer_node == f"{site}-s1")
        site_net[site] = str(ipaddress.IPv4Interface(intf.address).network)
        router_on_site[site] = str(_addr(intf.address))
    for site, other in (("cw", "gcp"), ("gcp", "cw")):
        routes = dict(plan.nodes[f"{site}-h1"].routes)
        assert routes[site_net[other]] == router_on_site[site]
        # the host routes everything non-local via its site router
        assert set(routes.values()) == {router_on_site[site]}
        assert len(routes) == len(plan.segments) - 1
    # each router reaches the other site via the other router's direct-link address
    direct = next(l for l in plan.links if l.name == "direct")
    direct_intfs = (direct.a_intf, direct.b_intf)
    gcp_direct = next(i for i in plan.nodes["gcp-r1"].intfs if i.name in direct_intfs)
    assert dict(plan.nodes["cw-r1"].routes)[site_net["gcp"]] == str(_addr(gcp_direct.address))
    _check_full_reachability(plan)
    assert _forward(plan, "cw-h1", _addr(plan.nodes["gcp-h1"].intfs[0].address)) == [
        "cw-h1", "cw-r1", "gcp-r1", "gcp-h1"]


def test_two_clouds_more_hosts_per_site():
    plan = _two_clouds(hosts_per_site=3)
    assert sorted(n.name for n in plan.hosts()) == [
        "cw-h1", "cw-h2", "cw-h3", "gcp-h1", "gcp-h2", "gcp-h3"]
    _check_address_plan(plan)
    _check_full_reachability(plan)
    # hosts of one site share the site subnet with the router at .1
    cw = {
        ipaddress.IPv4Interface(plan.nodes[f"cw-h{i}"].intfs[0].address).network
        for i in (1, 2, 3)
    }
    assert len(cw) == 1
    h3 = _addr(plan.nodes["cw-h3"].intfs[0].address)
    assert _forward(plan, "cw-h2", h3) == ["cw-h2", "cw-h3"]


# ------------------------------------------------------ two-clouds transit


@pytest.fixture(scope="module")
def transit_plan() -> LabPlan:
    return _two_clouds(path="transit", transit_hops=4)


def test_transit_routers_tr1_to_tr4(transit_plan):
    transit = sorted(n for n, p in transit_plan.nodes.items() if p.site == "transit")
    assert transit == ["tr1", "tr2", "tr3", "tr4"]
    assert all(transit_plan.nodes[n].role == "router" for n in transit)
    hops = [l for l in transit_plan.links if l.name == "transit-hop"]
    assert len(hops) == 5
    assert not any(l.name == "direct" for l in transit_plan.links)
    wires = [l.wire for l in hops]
    assert None not in wires and len(set(wires)) == 5


def test_transit_mtus(transit_plan):
    for link in transit_plan.links:
        expected = 1500 if link.name == "transit-hop" else 9000
        assert link.mtu == expected, f"{link.name} {link.a}-{link.b}: mtu {link.mtu}"
        for node, intf_name in ((link.a, link.a_intf), (link.b, link.b_intf)):
            intf = next(i for i in transit_plan.nodes[node].intfs if i.name == intf_name)
            assert intf.mtu == expected


def test_transit_address_plan(transit_plan):
    assert len(transit_plan.segments) == 2 + 5
    _check_address_plan(transit_plan)


def test_transit_hosts_route_via_their_site_router(transit_plan):
    plan = transit_plan
    for site, other in (("cw", "gcp"), ("gcp", "cw")):
        router_intf = _site_intf(plan, site)
        other_intf = _site_intf(plan, other)
        other_net = str(ipaddress.IPv4Interface(other_intf.address).network)
        routes = dict(plan.nodes[f"{site}-h1"].routes)
        assert routes[other_net] == str(_addr(router_intf.address))


def test_transit_routers_route_across_the_chain(transit_plan):
    plan = transit_plan
    chain = ["cw-r1", "tr1", "tr2", "tr3", "tr4", "gcp-r1"]
    site_net = {
        site: str(ipaddress.IPv4Interface(plan.nodes[f"{site}-h1"].intfs[0].address).network)
        for site in ("cw", "gcp")
    }

    def addr_facing(node: str, neighbour: str) -> str:
        intf = next(i for i in plan.nodes[node].intfs if i.peer_node == neighbour)
        return str(_addr(intf.address))

    for k in range(1, len(chain) - 1):
        routes = dict(plan.nodes[chain[k]].routes)
        assert routes[site_net["cw"]] == addr_facing(chain[k - 1], chain[k]), chain[k]
        assert routes[site_net["gcp"]] == addr_facing(chain[k + 1], chain[k]), chain[k]
    assert dict(plan.nodes["cw-r1"].routes)[site_net["gcp"]] == addr_facing("tr1", "cw-r1")
    assert dict(plan.nodes["gcp-r1"].routes)[site_net["cw"]] == addr_facing("tr4", "gcp-r1")
    dst = _addr(plan.nodes["gcp-h1"].intfs[0].address)
    assert _forward(plan, "cw-h1", dst) == ["cw-h1"] + chain + ["gcp-h1"]
    back = _addr(plan.nodes["cw-h1"].intfs[0].address)
    assert _forward(plan, "gcp-h1", back) == ["gcp-h1"] + chain[::-1] + ["cw-h1"]


def test_transit_full_reachability(transit_plan):
    _check_full_reachability(transit_plan)


@pytest.mark.parametrize("hops", [1, 2, 7])
def test_transit_hop_counts(hops):
    plan = _two_clouds(path="transit", transit_hops=hops, hosts_per_site=2)
    assert sorted(n for n, p in plan.nodes.items() if p.site == "transit") == sorted(
        f"tr{i}" for i in range(1, hops + 1))
    assert len(plan.segments) == 2 + hops + 1
    _check_address_plan(plan)
    _check_full_reachability(plan)


def test_transit_link_override_applies_to_every_hop():
    plan = _two_clouds(path="transit", links={"transit-hop": {"preset": "internet-transit",
                                                              "delay": "2ms"}})
    hops = [l for l in plan.links if l.name == "transit-hop"]
    assert {l.spec.forward.delay_ms for l in hops} == {2.0}
    assert {l.spec.forward.rate_bps for l in hops} == {1_000_000_000}


# ----------------------------------------------------------- bad input


def test_twenty_character_node_name_rejected_naming_the_node():
    name = "host-with-long-name1"
    assert len(name) == 20

    class LongName(Topo):
        def build(self):
            self.addHost(name)
            self.addHost("h2")
            self.addLink(name, "h2")

    with pytest.raises(InputError) as info:
        make_plan(LongName(), LAB, BLOCK, {})
    assert info.value.field == f"nodes.{name}"
    assert name in str(info.value)


def test_unknown_link_name_rejected_when_strict():
    topo = build_topology("pair", {})
    with pytest.raises(InputError) as info:
        make_plan(topo, LAB, BLOCK, {"wan": {"delay": "5ms"}})
    assert info.value.field == "links.wan"
    assert "link" in info.value.message  # lists the links that exist


def test_unknown_link_name_allowed_when_not_strict():
    topo = build_topology("pair", {})
    plan = make_plan(topo, LAB, BLOCK, {"wan": {"delay": "5ms"}}, strict_links=False)
    assert plan.links[0].wire is None


@pytest.mark.parametrize(
    "params,block",
    [
        ({}, "10.9.0.0/24"),  # three segments, room for one /24
        ({}, "10.9.0.0/23"),  # room for two
        ({"path": "transit", "transit_hops": 4}, "10.9.0.0/22"),  # seven segments, four /24s
    ],
)
def test_block_too_small(params, block):
    with pytest.raises(InputError) as info:
        _two_clouds(block=block, **params)
    assert info.value.field == "block"


def test_block_just_big_enough():
    plan = _two_clouds(block="10.9.0.0/22")  # three /24 segments in four
    _check_address_plan(plan)
    plan = _two_clouds(block="10.9.0.0/21", path="transit", transit_hops=4)  # seven in eight
    _check_address_plan(plan)


def test_unknown_role_rejected():
    class BadRole(Topo):
        def build(self):
            self.addHost("h1", role="firewall")
            self.addHost("h2")
            self.addLink("h1", "h2")

    with pytest.raises(InputError) as info:
        make_plan(BadRole(), LAB, BLOCK, {})
    assert info.value.field == "nodes.h1.role"


def test_big_segment_gets_a_bigger_subnet():
    class Big(Topo):
        def build(self):
            self.addSwitch("s1")
            for i in range(1, 301):
                self.addHost(f"h{i}")
                self.addLink(f"h{i}", "s1")

    plan = make_plan(Big(), LAB, "10.30.0.0/16", {})
    assert [ipaddress.IPv4Network(s).prefixlen for s in plan.segments.values()] == [23]
    _check_address_plan(plan)
    assert len({n.ip for n in plan.hosts()}) == 300


def test_mixed_segment_sizes_stay_aligned():
    # a /23 segment and a /24 one: the larger is placed first so both align
    class Mixed(Topo):
        def build(self):
            self.addSwitch("s1")
            self.addHost("r1", role="router")
            self.addLink("r1", "s1")
            for i in range(1, 300):
                self.addHost(f"h{i}")
                self.addLink(f"h{i}", "s1")
            self.addHost("x1")
            self.addLink("r1", "x1")

    plan = make_plan(Mixed(), LAB, "10.30.0.0/22", {})
    nets = sorted(ipaddress.IPv4Network(s) for s in plan.segments.values())
    assert [n.prefixlen for n in nets] == [23, 24]
    _check_address_plan(plan)
    _check_full_reachability(plan, sources=["r1", "x1", "h1", "h299"])


def test_link_fields_without_preset_adjust_the_topology_default():
    from testbed.topologies import build_topology

    topo = build_topology("two-clouds", {"path": "direct"})
    plan = make_plan(topo, "t", "10.99.0.0/16", {"direct": {"delay": "3ms"}})
    direct = next(l for l in plan.links if l.name == "direct")
    assert direct.spec.forward.delay_ms == 3.0
    assert direct.spec.forward.rate_bps == 10_000_000_000  # kept from direct-interconnect
    assert direct.mtu == 9000


@pytest.mark.parametrize("role,bridge_nf", [("switch", "0"), ("router", None), ("host", None)])
def test_switches_turn_bridge_netfilter_off(monkeypatch, role, bridge_nf):
    """Bridged frames in a switch never need iptables: br_netfilter would make every
    frame of the site fabric detour through the IP hooks (in the engine's send path)."""
    from testbed.lab import build
    from testbed.lab.plan import NodePlan

    monkeypatch.setattr(build.os.path, "exists", lambda path: path == build.BR_NF_SYSCTL)
    values = build.node_sysctls(NodePlan("n1", role, "tb.x.n1"), {})
    assert values.get("net.bridge.bridge-nf-call-iptables") == bridge_nf
    assert values["net.ipv6.conf.all.disable_ipv6"] == "1"
    monkeypatch.setattr(build.os.path, "exists", lambda path: False)  # no br_netfilter: nothing to set
    assert "net.bridge.bridge-nf-call-iptables" not in build.node_sysctls(NodePlan("n1", role, "tb.x.n1"), {})
