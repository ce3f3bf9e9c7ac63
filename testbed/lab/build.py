"""The kernel layer: make (and unmake) a lab's namespaces, links, addresses, routes.

Executes a :class:`~testbed.lab.plan.LabPlan` through netlink (pyroute2).
Nothing is ever created in the root namespace: each veth pair is created with
both ends placed directly in their node namespaces, and switches are Linux
bridges inside their own lab-owned namespace, so bridged lab frames never
cross the root namespace's iptables (br_netfilter) and the root's sysctls are
never touched. Per-namespace sysctls (forwarding on routers, IPv6 off, host
TCP settings) are set inside each namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Mapping, Optional

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import EnvironmentProblem, KernelError
from testbed.lab.nssocket import create_netns, ifindex, in_netns, write_sysctls
from testbed.lab.plan import WIRE_PORT_A, WIRE_PORT_B, LabPlan, LinkPlan, NodePlan

__all__ = [
    "open_ns",
    "create_namespaces",
    "create_links",
    "all_namespaces",
    "configure_wire",
    "wire_sysctls",
    "wait_ready",
    "configure_nodes",
    "set_sysctls",
    "remove_namespace",
    "list_namespaces",
]

BRIDGE = "br0"
BR_NF_SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"
READY_TIMEOUT_S = 10.0
READY_POLL_S = 0.02
IP_TIMEOUT_S = 10.0


@contextmanager
def open_ns(name: str) -> Iterator[IPRoute]:
    """A netlink socket inside namespace ``name`` (born there; no helper process)."""
    try:
        with in_netns(name):
            ns = IPRoute()
    except (OSError, NetlinkError) as exc:
        raise KernelError(f"cannot open namespace {name}: {exc}",
                          getattr(exc, "code", None) or getattr(exc, "errno", None)) from exc
    try:
        yield ns
    finally:
        ns.close()


def _kernel(what: str, exc: Exception) -> KernelError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    return KernelError(f"{what}: {exc}", code)


def list_namespaces() -> list:
    return sorted(netns.listnetns())


def all_namespaces(plan: LabPlan) -> List[str]:
    return [n.netns for n in plan.nodes.values()] + [l.wire for l in plan.links if l.wire]


def create_namespaces(plan: LabPlan) -> None:
    existing = set(netns.listnetns())
    for name in all_namespaces(plan):
        if name in existing:
            raise KernelError(f"namespace {name} already exists (a leftover? run 'testbed clean')")
        create_netns(name)


def _veth(ipr: IPRoute, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    try:
        # The first end is born up; the peer comes up when its namespace is
        # configured, so carrier (and the kernel's linkwatch delay of up to a
        # second) starts then, while other namespaces are still being set up.
        ipr.link("add", ifname=if_a, kind="veth", net_ns_fd=ns_a, state="up",
                 peer={"ifname": if_b, "net_ns_fd": ns_b})
    except NetlinkError as exc:
        raise _kernel(f"creating veth {ns_a}:{if_a} <-> {ns_b}:{if_b}", exc) from exc


def _tunnel(ipr: IPRoute, link: LinkPlan, port: str) -> None:
    """The VXLAN end of a link across machines, born in the link's half-wire as ``port``.

    Created from this machine's own namespace (its underlay socket stays
    here, where the underlay address is) straight into the wire, keyed by the
    link's VNI, unicast to the other machine; no learning, no multicast.
    """
    t = link.tunnel
    try:
        ipr.link("add", ifname=port, kind="vxlan", net_ns_fd=link.wire, vxlan_id=int(t["vni"]),
                 vxlan_local=t["local"], vxlan_group=t["remote"], vxlan_port=int(t["port"]),
                 vxlan_learning=0, vxlan_ttl=64)
    except NetlinkError as exc:
        raise _kernel(f"creating the VXLAN tunnel of link {link.name} (key {t['vni']}) "
                      f"{t['local']} -> {t['remote']} in {link.wire}", exc) from exc


def create_links(plan: LabPlan) -> None:
    """Create every veth pair with both ends born inside their namespaces.

    A shaped link is two veths: node a <-> wire port-a, wire port-b <-> node b.
    The half of a link across machines is one veth (local node <-> its wire
    port) and a VXLAN tunnel as the other port.
    """
    with IPRoute() as ipr:
        for link in plan.links:
            if link.tunnel:
                if link.tunnel["end"] == "a":
                    _veth(ipr, plan.nodes[link.a].netns, link.a_intf, link.wire, WIRE_PORT_A)
                    _tunnel(ipr, link, WIRE_PORT_B)
                else:
                    _tunnel(ipr, link, WIRE_PORT_A)
                    _veth(ipr, link.wire, WIRE_PORT_B, plan.nodes[link.b].netns, link.b_intf)
                continue
            a = plan.nodes[link.a].netns
            b = plan.nodes[link.b].netns
            if link.wire:
                _veth(ipr, a, link.a_intf, link.wire, WIRE_PORT_A)
                _veth(ipr, link.wire, WIRE_PORT_B, b, link.b_intf)
            else:
                _veth(ipr, a, link.a_intf, b, link.b_intf)


def configure_wire(link: LinkPlan) -> None:
    """A wire is a two-port bridge; it has no address and forwards nothing else."""
    with open_ns(link.wire) as ns:
        try:
            ns.link("set", ifname="lo", state="up")
            ns.link("add", ifname=BRIDGE, kind="bridge")
            bridge = ifindex(ns, BRIDGE)
            for port in (WIRE_PORT_A, WIRE_PORT_B):
                ns.link("set", ifname=port, mtu=link.mtu, master=bridge, state="up")
            ns.link("set", index=bridge, mtu=link.mtu, state="up")
        except NetlinkError as exc:
            raise _kernel(f"configuring wire of link {link.name} ({link.wire})", exc) from exc


def _configure_node(node: NodePlan, host_gso_max_bytes: Optional[int] = None) -> None:
    with open_ns(node.netns) as ns:
        try:
            ns.link("set", ifname="lo", state="up")
            bridge = None
            if node.role == "switch":
                ns.link("add", ifname=BRIDGE, kind="bridge")
                bridge = ifindex(ns, BRIDGE)
            for intf in node.intfs:
                # mtu, bridge port and up in one request (on an up bridge a
                # port joins as soon as it has carrier)
                settings = {"mtu": intf.mtu, "state": "up"}
                if bridge is not None:
                    settings["master"] = bridge
                if host_gso_max_bytes and node.role == "host":
                    settings["gso_max_size"] = host_gso_max_bytes  # htb.host_gso_max_bytes
                ns.link("set", ifname=intf.name, **settings)
                if intf.address:
                    addr, prefix = intf.address.split("/")
                    ns.addr("add", index=ifindex(ns, intf.name), address=addr, prefixlen=int(prefix))
            if bridge is not None:
                mtu = min((i.mtu for i in node.intfs), default=1500)
                ns.link("set", index=bridge, mtu=mtu, state="up")
            for subnet, via in node.routes:
                ns.route("add", dst=subnet, gateway=via)
        except NetlinkError as exc:
            raise _kernel(f"configuring {node.name} ({node.netns})", exc) from exc


def configure_nodes(plan: LabPlan, host_gso_max_bytes: Optional[int] = None) -> None:
    """Wires, then switches, routers and hosts last.

    Veths are created with the host-side end up (see :func:`_veth`), so
    bringing up the far ends first lets carrier come while the many host
    namespaces are still being addressed. ``host_gso_max_bytes`` caps the
    GSO packets hosts build (slow shaped links, see
    :func:`testbed.shaping.htb.host_gso_max_bytes`).
    """
    for link in plan.links:
        if link.wire:
            configure_wire(link)
    rank = {"switch": 0, "router": 1}
    for node in sorted(plan.nodes.values(), key=lambda n: rank.get(n.role, 2)):
        _configure_node(node, host_gso_max_bytes)


def set_sysctls(netns_name: str, values: Mapping[str, str]) -> None:
    """Set sysctls inside one namespace (per-namespace keys only)."""
    if values:
        write_sysctls(netns_name, values)


def node_sysctls(node: NodePlan, host_sysctls: Mapping[str, str]) -> Dict[str, str]:
    """The sysctls a node gets: IPv6 off everywhere, forwarding on routers, no
    bridge netfilter on switches."""
    values = {
        "net.ipv6.conf.all.disable_ipv6": "1",
        "net.ipv6.conf.default.disable_ipv6": "1",
    }
    if node.role == "router":
        values["net.ipv4.ip_forward"] = "1"
        # Routers answer with ICMP errors (TTL exceeded, frag needed) at full rate.
        values["net.ipv4.icmp_ratelimit"] = "0"
    if node.role == "switch" and os.path.exists(BR_NF_SYSCTL):
        # A switch's frames never need iptables (delay lines sit on wires):
        # without this every bridged frame takes br_netfilter's detour.
        values["net.bridge.bridge-nf-call-iptables"] = "0"
    if node.role == "host":
        values.update(host_sysctls)
    return values


def wire_sysctls(link: LinkPlan, userspace: bool) -> Dict[str, str]:
    """Bridged frames reach iptables (for NFQUEUE) only where a delay line needs them."""
    needs = userspace and (link.spec.forward.has_impairment or link.spec.reverse.has_impairment)
    values = {
        "net.ipv6.conf.all.disable_ipv6": "1",
        "net.ipv6.conf.default.disable_ipv6": "1",
    }
    if os.path.exists(BR_NF_SYSCTL):
        values["net.bridge.bridge-nf-call-iptables"] = "1" if needs else "0"
    elif needs:
        raise EnvironmentProblem(
            "the userspace delay line needs br_netfilter (bridged frames must reach iptables)",
            "modprobe br_netfilter (see 'testbed doctor')",
        )
    return values


def _not_ready(name: str) -> List[str]:
    """Interfaces of one namespace that cannot carry traffic yet.

    Read with ``ip -json -details link show`` (iproute2's C parser): on a
    switch with a thousand ports it answers in about 70 ms, where decoding the
    same dump with pyroute2 took 1.5 s -- most of a big lab's readiness wait.
    """
    argv = ["ip", "-json", "-details", "-n", name, "link", "show"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"'ip link show' in {name} did not answer within {IP_TIMEOUT_S:g} s") from exc
    if proc.returncode != 0:
        raise KernelError(f"'ip link show' in {name}: {(proc.stderr or '').strip()[:200]}")
    problems = []
    for link in json.loads(proc.stdout or "[]"):
        ifname = link.get("ifname")
        state = link.get("operstate")
        if ifname != "lo" and state not in ("UP", "UNKNOWN"):
            problems.append(f"{name}:{ifname} is {state}")
        port_state = ((link.get("linkinfo") or {}).get("info_slave_data") or {}).get("state")
        if port_state is not None and port_state != "forwarding":
            problems.append(f"{name}:{ifname} bridge port state {port_state}")
    return problems


def _watch_namespaces(plan: LabPlan) -> List[str]:
    """The namespaces whose links show every link's state.

    A veth's operstate is UP only when both ends are up (carrier is shared),
    so one end per link is enough: the bridge side (switch or wire, which also
    shows the port's forwarding state) where there is one, else end a. A big
    star is then one dump of the switch instead of one per host.
    """
    roles = {node.name: node.role for node in plan.nodes.values()}
    chosen = set()
    for link in plan.links:
        if link.wire:
            chosen.add(link.wire)
        elif roles[link.b] == "switch":
            chosen.add(plan.nodes[link.b].netns)
        else:
            chosen.add(plan.nodes[link.a].netns)
    return sorted(chosen)


def wait_ready(plan: LabPlan, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Poll until every interface is up and every bridge port forwards.

    The kernel reports a new veth's carrier asynchronously (linkwatch may defer
    it up to a second); until then a bridge port is disabled and the first ARP
    of a run is lost. Returns the seconds waited.
    """
    start = time.monotonic()
    pending = _watch_namespaces(plan)
    while True:
        problems = []
        still = []
        for name in pending:
            found = _not_ready(name)
            if found:
                still.append(name)
                problems += found
        if not problems:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise KernelError(f"lab not forwarding after {timeout_s:g} s: {', '.join(problems[:5])}")
        pending = still
        time.sleep(READY_POLL_S)


def remove_namespace(name: str) -> None:
    try:
        netns.remove(name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _kernel(f"removing namespace {name}", exc) from exc
