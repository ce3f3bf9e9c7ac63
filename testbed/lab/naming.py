"""Names of everything a lab creates, and the rules they must follow.

Every kernel object a lab makes carries the lab's name, so ``down`` and
``clean`` remove exactly what the lab made, by name:

* node namespaces ``tb.<lab>.<node>`` and link wires ``tb.<lab>._w<id>`` (a lab name cannot contain '.', so the
  prefix ``tb.<lab>.`` of one lab never matches another lab's namespaces);
* interfaces live only inside those namespaces (``<node>-eth<N>``, at most
  15 characters, the kernel's IFNAMSIZ - 1);
* the root-namespace guard chain ``TB-<lab>``;
* the state directory ``<state_dir>/<lab>``.
"""

from __future__ import annotations

import re

from testbed.errors import InputError

__all__ = [
    "NETNS_PREFIX",
    "IFNAME_MAX",
    "check_lab_name",
    "check_node_name",
    "netns_name",
    "wire_netns",
    "lab_of_netns",
    "intf_name",
    "guard_chain",
]

NETNS_PREFIX = "tb."
IFNAME_MAX = 15
_LAB_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")
_NODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
# "<node>-eth<N>" must fit IFNAME_MAX with up to two port digits.
NODE_NAME_MAX = IFNAME_MAX - len("-eth99")


def check_lab_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not _LAB_RE.fullmatch(name):
        raise InputError(
            field,
            f"lab name {name!r} must be 1-16 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit",
        )
    return name


def check_node_name(name: str, field: str = "node") -> str:
    if not isinstance(name, str) or not _NODE_RE.fullmatch(name):
        raise InputError(
            field,
            f"node name {name!r} must start with a letter and use only letters, "
            "digits and '-'",
        )
    if len(name) > NODE_NAME_MAX:
        raise InputError(
            field,
            f"node name {name!r} has {len(name)} characters; at most "
            f"{NODE_NAME_MAX} fit, because its interfaces '<node>-ethN' must fit "
            f"the kernel's {IFNAME_MAX}-character limit",
        )
    return name


def netns_name(lab: str, node: str) -> str:
    return f"{NETNS_PREFIX}{lab}.{node}"


def wire_netns(lab: str, link_id: int) -> str:
    """Namespace of a link's wire; '_' cannot start a node name, so no clash."""
    return f"{NETNS_PREFIX}{lab}._w{link_id}"


def lab_of_netns(netns: str):
    """The lab a namespace belongs to, or None if the testbed did not name it."""
    if not netns.startswith(NETNS_PREFIX):
        return None
    rest = netns[len(NETNS_PREFIX):]
    lab, sep, node = rest.partition(".")
    if not sep or not node or not _LAB_RE.fullmatch(lab):
        return None
    return lab


def intf_name(node: str, port: int) -> str:
    name = f"{node}-eth{port}"
    if len(name) > IFNAME_MAX:
        raise InputError(
            "node", f"interface name {name!r} exceeds {IFNAME_MAX} characters"
        )
    return name


def guard_chain(lab: str) -> str:
    return f"TB-{lab}"
