"""Cut a lab's plan into one slice per machine, and check the underlay can carry it.

The plan is computed once (:func:`testbed.lab.plan.make_plan`) for the whole
lab; each machine builds only its slice, with the same build code as a
one-machine lab. A slice holds the machine's own nodes, the links between
them, and its half of every link that crosses machines: the half is a wire
namespace ``tb.<lab>._w<id>a`` (machine of end a) or ``..._w<id>b`` whose far
port is a VXLAN tunnel to the other machine, keyed by the link (one VNI per
link). Each half shapes only the direction that leaves its machine, on the
sending side's wire: forward (a -> b) on end a's machine, reverse on end b's,
so no direction is shaped twice.

Pure: no kernel, no ssh.
"""

from __future__ import annotations

import zlib
from typing import Dict, List, Mapping, Tuple

from testbed.errors import EnvironmentProblem
from testbed.lab.plan import LabPlan, LinkPlan
from testbed.profile import LinkProfile, LinkSpec

__all__ = ["VXLAN_OVERHEAD_BYTES", "VXLAN_PORT", "cross_links", "link_vni", "slice_plans",
           "check_underlay_mtu", "half_wire"]

# outer IPv4 (20) + UDP (8) + VXLAN (8) + the inner Ethernet header (14)
VXLAN_OVERHEAD_BYTES = 50
VXLAN_PORT = 4789


def cross_links(plan: LabPlan, node_machine: Mapping[str, str]) -> List[LinkPlan]:
    """The links whose two ends are on different machines."""
    return [l for l in plan.links if node_machine[l.a] != node_machine[l.b]]


def link_vni(lab: str, link_id: int) -> int:
    """The VXLAN network identifier (24 bits) of one link: the lab's 12 bits, the link's 12."""
    if not 0 <= link_id < 4096:
        raise EnvironmentProblem(f"link id {link_id} does not fit a VXLAN key",
                                 "a lab across machines holds at most 4096 links")
    return (zlib.crc32(lab.encode()) % 4095 + 1) << 12 | link_id


def half_wire(plan: LabPlan, link: LinkPlan, end: str) -> str:
    """The namespace of ``link``'s half on the machine of its end ``end`` ("a" or "b")."""
    return f"tb.{plan.lab}._w{link.id}{end}"


def _half(plan: LabPlan, link: LinkPlan, end: str, local_ip: str, remote_ip: str,
          local: str, remote: str) -> dict:
    spec = link.spec
    if end == "a":  # this machine sends forward (a -> b) into the tunnel
        half = LinkSpec(forward=spec.forward, reverse=LinkProfile(mtu=spec.reverse.mtu))
    else:
        half = LinkSpec(forward=LinkProfile(mtu=spec.forward.mtu), reverse=spec.reverse)
    return {
        "id": link.id, "a": link.a, "b": link.b, "a_intf": link.a_intf, "b_intf": link.b_intf,
        "name": link.name, "mtu": link.mtu, "wire": half_wire(plan, link, end),
        "profile": half.to_user(),
        "tunnel": {"kind": "vxlan", "end": end, "vni": link_vni(plan.lab, link.id),
                   "local": local_ip, "remote": remote_ip, "port": VXLAN_PORT,
                   "machine": local, "peer_machine": remote,
                   # the whole link's RTT: queues are sized as for the unsplit link
                   "rtt_ms": spec.forward.delay_ms + spec.reverse.delay_ms},
    }


def slice_plans(plan: LabPlan, node_machine: Mapping[str, str],
                underlay: Mapping[str, str]) -> Dict[str, dict]:
    """machine -> its slice (a :meth:`LabPlan.to_dict` document, tunnel halves included).

    ``underlay`` maps each machine to the address its tunnels use.
    """
    full = plan.to_dict()
    slices: Dict[str, dict] = {}
    for machine in dict.fromkeys(node_machine[n] for n in plan.nodes):
        nodes = {n: doc for n, doc in full["nodes"].items() if node_machine[n] == machine}
        links = []
        for link, doc in zip(plan.links, full["links"]):
            ma, mb = node_machine[link.a], node_machine[link.b]
            if ma == mb == machine:
                links.append(doc)
            elif ma == machine:
                links.append(_half(plan, link, "a", underlay[ma], underlay[mb], ma, mb))
            elif mb == machine:
                links.append(_half(plan, link, "b", underlay[mb], underlay[ma], mb, ma))
        slices[machine] = {"lab": plan.lab, "block": plan.block, "segments": full["segments"],
                           "nodes": nodes, "links": links}
    return slices


def check_underlay_mtu(plan: LabPlan, node_machine: Mapping[str, str],
                       underlay_mtu: Mapping[Tuple[str, str], int],
                       overhead_bytes: int = VXLAN_OVERHEAD_BYTES) -> None:
    """Refuse (exit 3, the fix named) a crossing link whose frames the underlay cannot carry.

    ``underlay_mtu[(m1, m2)]`` is the MTU of the path between two machines.
    A tunnel never fragments: a 9000-byte link over a 1500-byte underlay
    would silently lose every large frame.
    """
    for link in cross_links(plan, node_machine):
        pair = (node_machine[link.a], node_machine[link.b])
        mtu = underlay_mtu.get(pair, underlay_mtu.get(pair[::-1]))
        if mtu is None:
            continue
        need = link.mtu + overhead_bytes
        if need > mtu:
            raise EnvironmentProblem(
                f"link {link.name} ({link.a}-{link.b}, MTU {link.mtu}) crosses from machine {pair[0]} "
                f"to {pair[1]}, whose underlay MTU {mtu} cannot carry it with {overhead_bytes} bytes "
                "of VXLAN encapsulation",
                f"raise the underlay MTU to {need} or set the link's mtu to {mtu - overhead_bytes} "
                f"(--set links.{link.name}.mtu={mtu - overhead_bytes})")
