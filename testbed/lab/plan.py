"""Turn a topology description into a complete lab plan, without touching the kernel.

Input: a Mininet ``Topo`` (a pure description; hosts may carry ``role='router'``
and ``site=...``; links carry ``link=<profile name>`` and optionally
``profile=<default user-form profile>``) and the resolved link profiles.

Output: a :class:`LabPlan` saying which namespaces, interfaces, addresses and
static routes the lab needs and which profile shapes each direction of each
link. The kernel layer (:mod:`testbed.lab.build`) only executes a plan, so the
address plan and routing are unit-testable without root.

Wires: a shaped link runs through its own "wire" namespace, a two-port
bridge (``port-a`` faces node a, ``port-b`` node b) where the link's rate,
queue and impairments live, per direction on the port the traffic leaves by.
Like a real link, the emulation sits between the hosts, not in their stacks:
the sender's TCP is not held back by its own qdisc, and the receiver's kernel
timestamps (ping's RTT) are taken after the delay. Being layer 2, a wire adds
no IP hop.

Address plan: every layer-2 segment (a group of connected switches with the
interfaces attached to them, or a point-to-point link between two L3 nodes)
gets its own subnet of the lab's block; routers take the lowest addresses of a
segment, hosts the next ones. Routes: every L3 node gets a static route to
every subnet it is not attached to, via the first hop of a shortest path that
only passes through routers.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import AbstractSet, Dict, List, Mapping, Optional, Tuple

from testbed.errors import InputError
from testbed.lab.naming import check_node_name, intf_name, netns_name, wire_netns
from testbed.lab.paths import bfs
from testbed.profile import LinkProfile, LinkSpec, resolve_link

__all__ = ["WIRE_PORT_A", "WIRE_PORT_B", "IntfPlan", "LinkPlan", "NodePlan", "LabPlan", "make_plan",
           "compute_routes", "DEFAULT_MTU"]

DEFAULT_MTU = 1500
WIRE_PORT_A = "port-a"  # wire port facing link.a
WIRE_PORT_B = "port-b"  # wire port facing link.b
ROLES = ("host", "router", "switch")


@dataclass
class IntfPlan:
    name: str
    node: str
    link_id: int
    peer_node: str
    peer_intf: str
    mtu: int
    address: Optional[str] = None  # "10.200.1.2/24"
    segment: Optional[int] = None


@dataclass
class NodePlan:
    name: str
    role: str
    netns: str
    site: Optional[str] = None
    intfs: List[IntfPlan] = field(default_factory=list)
    routes: List[Tuple[str, str]] = field(default_factory=list)  # (subnet, via)

    @property
    def ip(self) -> Optional[str]:
        for intf in self.intfs:
            if intf.address:
                return intf.address.split("/")[0]
        return None


@dataclass
class LinkPlan:
    id: int
    a: str
    b: str
    a_intf: str
    b_intf: str
    name: str  # profile name, e.g. "direct"
    spec: LinkSpec  # forward = a -> b, reverse = b -> a
    mtu: int
    wire: Optional[str] = None  # netns of the link's wire (None: plain veth)
    # a plan slice's half of a link that crosses machines (testbed.cluster.slicing):
    # {"end": "a"|"b" (the local end), "vni", "local", "remote", "port", "rtt_ms", ...}
    tunnel: Optional[dict] = None

    @property
    def shaped(self) -> bool:
        """True if either direction has a rate limit or an impairment."""
        return any(p.is_shaped or p.has_impairment for p in (self.spec.forward, self.spec.reverse))


@dataclass
class LabPlan:
    lab: str
    block: str
    nodes: Dict[str, NodePlan]
    links: List[LinkPlan]
    segments: Dict[int, str]  # segment id -> subnet

    def node(self, name: str) -> NodePlan:
        try:
            return self.nodes[name]
        except KeyError:
            raise InputError(
                "node", f"no node {name!r} in lab {self.lab!r} "
                f"(nodes: {', '.join(sorted(self.nodes))})"
            ) from None

    def hosts(self) -> List[NodePlan]:
        return [n for n in self.nodes.values() if n.role == "host"]

    def node_by_address(self) -> Dict[str, str]:
        """IPv4 address (no prefix) -> the name of the node that holds it."""
        return {intf.address.split("/")[0]: node.name for node in self.nodes.values()
                for intf in node.intfs if intf.address}

    def to_dict(self) -> dict:
        return {
            "lab": self.lab,
            "block": self.block,
            "segments": {str(k): v for k, v in self.segments.items()},
            "nodes": {
                n.name: {
                    "role": n.role,
                    "site": n.site,
                    "netns": n.netns,
                    "ip": n.ip,
                    "intfs": [
                        {"name": i.name, "address": i.address, "mtu": i.mtu,
                         "peer": f"{i.peer_node}:{i.peer_intf}"}
                        for i in n.intfs
                    ],
                    "routes": [list(r) for r in n.routes],
                }
                for n in self.nodes.values()
            },
            "links": [
                {"id": l.id, "a": l.a, "b": l.b, "a_intf": l.a_intf,
                 "b_intf": l.b_intf, "name": l.name, "mtu": l.mtu,
                 "wire": l.wire, "profile": l.spec.to_user(),
                 **({"tunnel": dict(l.tunnel)} if l.tunnel else {})}
                for l in self.links
            ],
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> "LabPlan":
        """The plan back from :meth:`to_dict` (a running lab's state), routes included."""
        links = [
            LinkPlan(int(l["id"]), l["a"], l["b"], l["a_intf"], l["b_intf"], l["name"],
                     resolve_link(l["profile"], f"plan.links.{l['id']}"), int(l["mtu"]),
                     l.get("wire"), l.get("tunnel"))
            for l in doc["links"]
        ]
        link_of = {}
        for l in links:
            link_of[(l.a, l.a_intf)] = l.id
            link_of[(l.b, l.b_intf)] = l.id
        segments = {int(k): v for k, v in doc["segments"].items()}
        nets = {k: ipaddress.IPv4Network(v) for k, v in segments.items()}
        nodes: Dict[str, NodePlan] = {}
        for name, n in doc["nodes"].items():
            node = NodePlan(name=name, role=n["role"], netns=n["netns"], site=n.get("site"),
                            routes=[(r[0], r[1]) for r in n.get("routes", [])])
            for i in n["intfs"]:
                peer_node, _, peer_intf = i["peer"].partition(":")
                segment = None
                if i.get("address"):
                    ip = ipaddress.IPv4Interface(i["address"]).ip
                    segment = next((k for k, net in nets.items() if ip in net), None)
                node.intfs.append(IntfPlan(i["name"], name, link_of[(name, i["name"])], peer_node,
                                           peer_intf, int(i["mtu"]), i.get("address"), segment))
            nodes[name] = node
        return cls(lab=doc["lab"], block=doc["block"], nodes=nodes, links=links, segments=segments)


def _role(topo, name: str) -> str:
    if topo.isSwitch(name):
        return "switch"
    role = topo.nodeInfo(name).get("role", "host")
    if role not in ("host", "router"):
        raise InputError(f"nodes.{name}.role", f"unknown role {role!r}")
    return role


def _link_spec(name: str, opts: dict, links: Mapping[str, object], field_name: str) -> LinkSpec:
    default = opts.get("profile")
    if name in links:
        value = links[name]
        # Fields given without a preset adjust the topology's default preset
        # (--set direct.delay=3ms keeps direct-interconnect's rate and MTU).
        if isinstance(value, Mapping) and "preset" not in value and isinstance(default, str):
            value = {"preset": default, **value}
        return resolve_link(value, f"links.{name}")
    if default is not None:
        return resolve_link(default, f"{field_name}.profile")
    return LinkSpec(forward=LinkProfile(), reverse=LinkProfile())


def _link_mtu(spec: LinkSpec, field_name: str) -> int:
    mtus = {p.mtu for p in (spec.forward, spec.reverse) if p.mtu}
    if len(mtus) > 1:
        raise InputError(f"{field_name}.mtu", "forward and reverse MTU must be equal")
    return mtus.pop() if mtus else DEFAULT_MTU


def _segments(nodes: Dict[str, NodePlan]) -> List[List[IntfPlan]]:
    """Group L3 interfaces into layer-2 segments (switches merge segments)."""
    seen_switch = set()
    segments: List[List[IntfPlan]] = []
    for node in nodes.values():
        if node.role != "switch" or node.name in seen_switch:
            continue
        members: List[IntfPlan] = []
        todo = deque([node.name])
        seen_switch.add(node.name)
        while todo:
            sw = nodes[todo.popleft()]
            for intf in sw.intfs:
                peer = nodes[intf.peer_node]
                if peer.role == "switch":
                    if peer.name not in seen_switch:
                        seen_switch.add(peer.name)
                        todo.append(peer.name)
                else:
                    members.append(_intf(peer, intf.peer_intf))
        if members:
            segments.append(members)
    for node in nodes.values():
        if node.role == "switch":
            continue
        for intf in node.intfs:
            peer = nodes[intf.peer_node]
            if peer.role != "switch" and node.name < peer.name:
                segments.append([intf, _intf(peer, intf.peer_intf)])
    return segments


def _intf(node: NodePlan, name: str) -> IntfPlan:
    for intf in node.intfs:
        if intf.name == name:
            return intf
    raise KeyError(name)


def _allocate(block: ipaddress.IPv4Network, segments: List[List[IntfPlan]], nodes) -> Dict[int, str]:
    """Give each segment a subnet (largest first, so subnets stay aligned)."""
    sized = []
    for idx, members in enumerate(segments):
        need = len(members) + 2  # network and broadcast addresses
        prefix = 32 - max(2, (need - 1).bit_length())
        prefix = min(prefix, 24)  # readable /24s unless a segment needs more
        sized.append((prefix, idx))
    sized.sort()
    next_addr = int(block.network_address)
    end = int(block.broadcast_address)
    subnets: Dict[int, str] = {}
    for prefix, idx in sized:
        size = 1 << (32 - prefix)
        next_addr = (next_addr + size - 1) // size * size
        if next_addr + size - 1 > end:
            raise InputError(
                "block", f"address block {block} is too small for {len(segments)} segments"
            )
        net = ipaddress.IPv4Network((next_addr, prefix))
        next_addr += size
        subnets[idx] = str(net)
        members = sorted(
            segments[idx], key=lambda i: (nodes[i.node].role != "router", i.node, i.name)
        )
        for host_no, intf in enumerate(members, start=1):
            intf.address = f"{net.network_address + host_no}/{prefix}"
            intf.segment = idx
    return subnets


def _l2_reach(nodes: Dict[str, NodePlan], down_links: AbstractSet[int]) -> Dict[Tuple[str, str], object]:
    """Which layer-2 piece each L3 interface sits on once ``down_links`` are cut.

    Two interfaces of one segment still reach each other when they map to the
    same piece; an interface on a cut link maps to nothing.
    """
    piece: Dict[Tuple[str, str], object] = {}
    switch_piece: Dict[str, str] = {}
    for node in nodes.values():
        if node.role == "switch":
            continue
        for intf in node.intfs:
            if intf.link_id in down_links:
                continue
            peer = nodes[intf.peer_node]
            if peer.role != "switch":
                piece[(node.name, intf.name)] = ("link", intf.link_id)
                continue
            if peer.name not in switch_piece:
                todo, seen = deque([peer.name]), {peer.name}
                while todo:
                    for sw_intf in nodes[todo.popleft()].intfs:
                        other = nodes[sw_intf.peer_node]
                        if (other.role == "switch" and other.name not in seen
                                and sw_intf.link_id not in down_links):
                            seen.add(other.name)
                            todo.append(other.name)
                label = min(seen)
                for sw in seen:
                    switch_piece[sw] = label
            piece[(node.name, intf.name)] = ("switches", switch_piece[peer.name])
    return piece


def _routes(nodes: Dict[str, NodePlan], subnets: Dict[int, str],
            down_links: AbstractSet[int] = frozenset()) -> None:
    """Static routes along shortest paths that pass only through routers.

    Links whose ids are in ``down_links`` carry nothing (a failover's view).
    """
    # Segment members instead of a node -> neighbours table: on a big switch
    # that table is quadratic (a million pairs at 1024 hosts).
    by_segment: Dict[int, List[IntfPlan]] = {}
    for node in nodes.values():
        for intf in node.intfs:
            if intf.segment is not None:
                by_segment.setdefault(intf.segment, []).append(intf)
    reach = _l2_reach(nodes, down_links) if down_links else None
    attached = {
        n: {i.segment for i in nodes[n].intfs if i.segment is not None} for n in nodes
    }

    def neighbours(name: str):
        """(neighbour, its address on the shared segment), segment by segment."""
        for intf in nodes[name].intfs:
            if intf.segment is None:
                continue
            here = reach.get((name, intf.name)) if reach is not None else None
            if reach is not None and here is None:
                continue  # this side reaches nothing
            for b in by_segment[intf.segment]:
                if b.node == name:
                    continue
                if reach is not None and here != reach.get((b.node, b.name)):
                    continue
                yield b.node, b.address.split("/")[0]

    # A segment leads anywhere new only through a router or a node on another
    # segment too; a host whose segments have neither needs no routes.
    leads_on = {seg for seg, members in by_segment.items()
                if any(nodes[m.node].role == "router" or len(attached[m.node]) > 1 for m in members)}
    for src in nodes.values():
        if src.role == "switch" or not (attached[src.name] & leads_on):
            continue
        # first_hop[n] = address of the neighbour of src that leads to n (hosts do not forward)
        found = bfs(src.name, neighbours, lambda n: nodes[n].role == "router")
        first_hop: Dict[str, str] = {}
        for name, (parent, addr) in found.items():
            if parent is not None:
                first_hop[name] = addr if parent == src.name else first_hop[parent]
        routed = set(attached[src.name])
        # Visit destinations in BFS order so the nearest route to a subnet wins.
        for dst in first_hop:
            for seg in attached[dst]:
                if seg not in routed:
                    routed.add(seg)
                    src.routes.append((subnets[seg], first_hop[dst]))


def compute_routes(plan: LabPlan, down_links: AbstractSet[int] = frozenset()
                   ) -> Dict[str, List[Tuple[str, str]]]:
    """The static routes of every L3 node of ``plan`` with links ``down_links`` (ids) cut.

    The same shortest-path rule as the lab was built with; with no link cut it
    gives exactly the plan's routes. Pure: the plan is not changed.
    """
    unknown = set(down_links) - {l.id for l in plan.links}
    if unknown:
        raise InputError("links", f"plan {plan.lab!r} has no link with id {sorted(unknown)[0]}")
    nodes = {
        name: NodePlan(name=n.name, role=n.role, netns=n.netns, site=n.site, intfs=list(n.intfs))
        for name, n in plan.nodes.items()
    }
    _routes(nodes, plan.segments, frozenset(down_links))
    return {name: list(n.routes) for name, n in nodes.items() if n.role != "switch"}


def make_plan(
    topo, lab: str, block: str, links: Mapping[str, object], strict_links: bool = True
) -> LabPlan:
    """Build the plan of ``topo`` for lab ``lab`` inside address block ``block``.

    With ``strict_links`` a profile in ``links`` that names no link of this
    topology is an error (a typo must not leave a link unshaped).
    """
    net = ipaddress.IPv4Network(block)
    nodes: Dict[str, NodePlan] = {}
    for name in topo.nodes(sort=True):
        check_node_name(name, f"nodes.{name}")
        info = topo.nodeInfo(name)
        nodes[name] = NodePlan(
            name=name, role=_role(topo, name), netns=netns_name(lab, name),
            site=info.get("site"),
        )
    link_plans: List[LinkPlan] = []
    for link_id, (a, b, info) in enumerate(topo.links(sort=True, withInfo=True)):
        opts = dict(info)
        a, b = opts.get("node1", a), opts.get("node2", b)
        field_name = f"links[{a}-{b}]"
        profile_name = opts.get("link", f"{a}-{b}")
        spec = _link_spec(profile_name, opts, links, field_name)
        mtu = _link_mtu(spec, f"links.{profile_name}")
        a_intf = intf_name(a, len(nodes[a].intfs))
        b_intf = intf_name(b, len(nodes[b].intfs))
        nodes[a].intfs.append(IntfPlan(a_intf, a, link_id, b, b_intf, mtu))
        nodes[b].intfs.append(IntfPlan(b_intf, b, link_id, a, a_intf, mtu))
        link = LinkPlan(link_id, a, b, a_intf, b_intf, profile_name, spec, mtu)
        if link.shaped:
            link.wire = wire_netns(lab, link_id)
        link_plans.append(link)
    unknown = set(links) - {l.name for l in link_plans}
    if unknown and strict_links:
        raise InputError(
            f"links.{sorted(unknown)[0]}",
            "this topology has no link of that name (links: "
            + ", ".join(sorted({l.name for l in link_plans})) + ")",
        )
    segments = _segments(nodes)
    subnets = _allocate(net, segments, nodes)
    _routes(nodes, subnets)
    return LabPlan(lab=lab, block=str(net), nodes=nodes, links=link_plans, segments=subnets)
