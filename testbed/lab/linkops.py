"""Kernel operations on a live lab's links: state, bridge membership, routes, netem changes.

Used at runtime (events, ``testbed set``) on namespaces a lab made; every
netlink error is raised as a :class:`~testbed.errors.KernelError` naming the
namespace and interface.
"""

from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence

from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import KernelError
from testbed.lab.build import open_ns
from testbed.lab.nssocket import ifindex
from testbed.shaping.netem import netem_qdisc_msg, netem_request, send_qdisc_msg

__all__ = ["netem_change_msg", "netem_change", "ifindex", "set_state", "set_master", "replace_routes",
           "ROUTE_RETRY_S"]

ROUTE_RETRY_S = 2.0  # how long a route replace is retried while a link comes up
_CHANGE_FLAGS = NLM_F_REQUEST | NLM_F_ACK


def netem_change_msg(ifindex: int, parent: Optional[int], handle: int, profile, limit_pkts: int):
    """(message, flags) changing the netem qdisc ``handle`` to ``profile``.

    The same message :class:`~testbed.shaping.netem.NetemBackend` adds with,
    sent without NLM_F_CREATE/NLM_F_EXCL: ``tc qdisc change`` (the kernel
    refuses if no such qdisc exists, and keeps its queue).
    """
    return netem_qdisc_msg(ifindex, parent, handle, netem_request(profile, limit_pkts)), _CHANGE_FLAGS


def netem_change(ns, ifindex: int, parent: Optional[int], handle: int, profile, limit_pkts: int) -> None:
    send_qdisc_msg(ns, *netem_change_msg(ifindex, parent, handle, profile, limit_pkts))


def set_state(netns: str, ifnames: Sequence[str], state: str) -> None:
    with open_ns(netns) as ns:
        for ifname in ifnames:
            try:
                ns.link("set", index=ifindex(ns, ifname, netns), state=state)
            except NetlinkError as exc:
                raise KernelError(f"setting {netns}:{ifname} {state}: {exc}", exc.code) from exc


def set_master(netns: str, ifname: str, bridge: Optional[str]) -> None:
    """Attach ``ifname`` to ``bridge`` (a name in the same namespace) or detach it (None)."""
    with open_ns(netns) as ns:
        try:
            master = ifindex(ns, bridge, netns) if bridge else 0
            ns.link("set", index=ifindex(ns, ifname, netns), master=master)
        except NetlinkError as exc:
            what = f"to {bridge}" if bridge else "from its bridge"
            raise KernelError(f"moving {netns}:{ifname} {what}: {exc}", exc.code) from exc


def replace_routes(netns: str, routes: Mapping[str, str]) -> None:
    """``ip route replace SUBNET via GW`` for each; retried briefly while a link comes up."""
    deadline = time.monotonic() + ROUTE_RETRY_S
    with open_ns(netns) as ns:
        for subnet, via in routes.items():
            while True:
                try:
                    ns.route("replace", dst=subnet, gateway=via)
                    break
                except NetlinkError as exc:
                    if time.monotonic() > deadline:
                        raise KernelError(f"route {subnet} via {via} in {netns}: {exc}",
                                          exc.code) from exc
                    time.sleep(0.01)
