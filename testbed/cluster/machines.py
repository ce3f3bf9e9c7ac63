"""The ``machines:`` and ``placement:`` fields: which machine runs which site.

``machines:`` maps a machine name to its ssh address, either a plain
``"user@host"`` string or a mapping ``{address, user, key, python, port}``.
``placement:`` maps a site to a machine name; sites it leaves out go round
robin over the machines (Mininet Cluster Edition's ``RoundRobinPlacer``), in
the order the topology names them. A node goes where its site goes, so a
site's routers live with its hosts and only inter-site links cross machines.

With ``placement:`` but no ``machines:``, the machines it names are one-box
stand-ins (network namespaces with their own sshd, see
:mod:`testbed.cluster.standin`). Nothing here touches the kernel.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from testbed.errors import InputError

__all__ = ["Machine", "parse_machines", "check_machine_name", "place_sites", "node_machines",
           "MACHINE_FIELDS", "sites_of"]

# a machine name ends up in namespace and interface names: short and plain
_MACHINE_RE = re.compile(r"[a-z][a-z0-9-]{0,9}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")
MACHINE_FIELDS = ("address", "user", "key", "python", "port")


@dataclass(frozen=True)
class Machine:
    """One machine a lab runs on, as ssh reaches it."""

    name: str
    address: str
    user: str = "root"
    key: Optional[str] = None  # private key file; None: ssh's own default
    python: str = sys.executable  # the python with the same testbed installed
    port: int = 22
    via_netns: Optional[str] = None  # one-box: the namespace ssh runs from (the control point)
    standin: Optional[str] = None  # one-box: the stand-in's own namespace

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping) -> "Machine":
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.address}"


def check_machine_name(name: Any, field: str) -> str:
    if not isinstance(name, str) or not _MACHINE_RE.fullmatch(name):
        raise InputError(field, f"machine name {name!r} must be 1-10 characters of a-z, 0-9 and '-', "
                         "starting with a letter")
    return name


def _check_host(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _HOST_RE.fullmatch(value):
        raise InputError(field, f"{value!r} is not a host name or IPv4 address")
    return value


def _one_machine(name: str, value: Any, field: str) -> Machine:
    if isinstance(value, str):
        user, sep, host = value.rpartition("@")
        value = {"address": host, **({"user": user} if sep else {})}
    if not isinstance(value, Mapping):
        raise InputError(field, "a machine is \"user@host\" or a mapping with address, user, key, python, port")
    unknown = sorted(set(value) - set(MACHINE_FIELDS))
    if unknown:
        raise InputError(f"{field}.{unknown[0]}", f"unknown key (known: {', '.join(MACHINE_FIELDS)})")
    if "address" not in value:
        raise InputError(f"{field}.address", "required field is missing")
    out: Dict[str, Any] = {"name": name, "address": _check_host(value["address"], f"{field}.address")}
    user = value.get("user", "root")
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise InputError(f"{field}.user", f"invalid user name {user!r}")
    out["user"] = user
    for key in ("key", "python"):
        if value.get(key) is not None:
            text = value[key]
            if not isinstance(text, str) or not text.startswith("/") or "\n" in text or len(text) > 4000:
                raise InputError(f"{field}.{key}", f"must be an absolute path, not {text!r}")
            out[key] = text
    port = value.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InputError(f"{field}.port", f"must be a TCP port 1-65535, not {port!r}")
    out["port"] = port
    return Machine(**out)


def parse_machines(value: Any, field: str = "machines") -> List[Machine]:
    """The validated ``machines:`` mapping, in the order given."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise InputError(field, "must map machine names to \"user@host\" or {address, user, key, python}")
    machines = [_one_machine(check_machine_name(name, f"{field}.{name}"), item, f"{field}.{name}")
                for name, item in value.items()]
    seen: Dict[str, str] = {}
    for m in machines:
        if m.address in seen:
            raise InputError(f"{field}.{m.name}.address",
                             f"{m.address} is also machine {seen[m.address]!r}'s address")
        seen[m.address] = m.name
    return machines


def place_sites(sites: Sequence[str], machines: Sequence[str], placement: Optional[Mapping[str, Any]],
                field: str = "placement") -> Dict[str, str]:
    """site -> machine: ``placement`` where it says, round robin for the other sites.

    Round robin is Mininet Cluster Edition's ``RoundRobinPlacer`` over the
    machines not named in ``placement`` (all of them when none is left),
    so the default puts one site per machine.
    """
    from mininet.examples.cluster import RoundRobinPlacer  # Mininet Cluster Edition's placer

    placement = dict(placement or {})
    if not machines:
        raise InputError("machines", "no machines to place sites on")
    for site, machine in placement.items():
        if site not in sites:
            raise InputError(f"{field}.{site}", f"this topology has no site {site!r} "
                             f"(sites: {', '.join(sites)})")
        if machine not in machines:
            raise InputError(f"{field}.{site}", f"no machine {machine!r} (machines: {', '.join(machines)})")
    free = [m for m in machines if m not in placement.values()] or list(machines)
    placer = RoundRobinPlacer(servers=free)
    return {site: placement[site] if site in placement else placer.place(site) for site in sites}


def node_machines(plan, site_machine: Mapping[str, str]) -> Dict[str, str]:
    """node -> machine for every node of ``plan``.

    A node takes its site's machine; a node without a site takes the machine
    of its first neighbour that has one (else the first machine).
    """
    out = {name: site_machine[node.site] for name, node in plan.nodes.items() if node.site in site_machine}
    first = next(iter(site_machine.values()))
    changed = True
    while changed:
        changed = False
        for link in plan.links:
            for here, there in ((link.a, link.b), (link.b, link.a)):
                if here not in out and there in out:
                    out[here] = out[there]
                    changed = True
    for name in plan.nodes:
        out.setdefault(name, first)
    return out


def sites_of(plan) -> List[str]:
    """The plan's sites, in node order (first seen first)."""
    seen: List[str] = []
    for node in plan.nodes.values():
        if node.site and node.site not in seen:
            seen.append(node.site)
    return seen
