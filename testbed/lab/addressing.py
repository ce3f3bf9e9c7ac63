"""Choosing a lab's address block so it overlaps nothing the machine uses.

The block must not overlap any address or route of the root namespace
(default routes excepted: they cover everything), nor another lab's block.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, List, Optional

from pyroute2 import IPRoute

from testbed.errors import EnvironmentProblem, InputError

__all__ = ["root_networks", "overlaps", "choose_block", "check_block", "check_syntax"]

# Candidate /16 blocks, tried in order when the user does not pick one.
CANDIDATES = [f"10.{n}.0.0/16" for n in range(200, 250)]


def root_networks() -> List[ipaddress.IPv4Network]:
    """Networks of the root namespace's IPv4 addresses and non-default routes."""
    nets: List[ipaddress.IPv4Network] = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr(family=2):
            addr = msg.get_attr("IFA_ADDRESS")
            nets.append(ipaddress.IPv4Network(f"{addr}/{msg['prefixlen']}", strict=False))
        for table in (254, 255):  # main and local tables
            for msg in ipr.get_routes(family=2, table=table):
                if msg["dst_len"] == 0:
                    continue
                dst = msg.get_attr("RTA_DST")
                if dst:
                    nets.append(ipaddress.IPv4Network(f"{dst}/{msg['dst_len']}", strict=False))
    return nets


def overlaps(block: ipaddress.IPv4Network, nets: Iterable[ipaddress.IPv4Network]) -> Optional[str]:
    for net in nets:
        if block.overlaps(net):
            return str(net)
    return None


def check_syntax(block: str) -> str:
    """A valid IPv4 network of at least a /24 (no look at the machine)."""
    try:
        net = ipaddress.IPv4Network(str(block))
    except ValueError as exc:
        raise InputError("block", f"{block!r} is not an IPv4 network: {exc}") from None
    if net.prefixlen > 24:
        raise InputError("block", f"{block} is too small; use a /24 or larger")
    return str(net)


def check_block(block: str, other_labs: Iterable[str] = ()) -> str:
    net = ipaddress.IPv4Network(check_syntax(block))
    hit = overlaps(net, root_networks())
    if hit:
        raise EnvironmentProblem(
            f"address block {block} overlaps {hit}, used by this machine's root namespace",
            "choose another block with --set block=A.B.C.D/16",
        )
    hit = overlaps(net, [ipaddress.IPv4Network(b) for b in other_labs])
    if hit:
        raise EnvironmentProblem(
            f"address block {block} overlaps {hit}, the block of another running lab",
            "choose another block with --set block=A.B.C.D/16",
        )
    return str(net)


def choose_block(other_labs: Iterable[str] = ()) -> str:
    taken = [ipaddress.IPv4Network(b) for b in other_labs] + root_networks()
    for candidate in CANDIDATES:
        if not overlaps(ipaddress.IPv4Network(candidate), taken):
            return candidate
    raise EnvironmentProblem(
        "no free address block in 10.200.0.0-10.249.255.255 for a new lab",
        "take a lab down, or pass --set block=A.B.C.D/16",
    )
