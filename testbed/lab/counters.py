"""Bytes that crossed each link of a running lab, in each direction.

Read from the kernel's own interface counters (``IFLA_STATS64``) with
pyroute2, one netlink socket per namespace, no subprocess:

* a **shaped** link runs through its wire namespace (:mod:`testbed.lab.plan`):
  frames entering ``port-a`` came from node a, so ``a_to_b_bytes`` is
  port-a's ``rx_bytes`` and ``b_to_a_bytes`` port-b's. That is what each end
  *sent* onto the link, before the link's queue could drop any of it -- what
  a cloud bills as egress;
* an **unshaped** link is a plain veth pair: ``a_to_b_bytes`` is the
  ``tx_bytes`` of ``a_intf`` in node a's namespace, ``b_to_a_bytes`` that of
  ``b_intf`` in node b's.

Counts are Ethernet frame bytes as the kernel counts them (14 header bytes
per frame, no FCS), so ``*_packets`` are given too. The counters only grow
while the lab is up: take :func:`link_bytes` before and after a step and
:func:`delta` the two.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import InputError, KernelError, RunError
from testbed.lab.build import open_ns
from testbed.lab.plan import WIRE_PORT_A, WIRE_PORT_B, LabPlan

__all__ = ["COUNTER_FIELDS", "link_bytes", "delta"]

#: The fields of a link record that are counters (``delta`` subtracts them).
COUNTER_FIELDS = ("a_to_b_bytes", "b_to_a_bytes", "a_to_b_packets", "b_to_a_packets")


def _links(plan_or_lab: Any) -> List[dict]:
    """Every link as a dict: id, name, a, b, sites, and where to read each direction.

    Accepts a :class:`~testbed.lab.plan.LabPlan`, a :class:`~testbed.lab.lab.Lab`
    (its ``plan``) or a plan document (:meth:`LabPlan.to_dict`).
    """
    if isinstance(getattr(plan_or_lab, "plan", None), LabPlan):
        plan_or_lab = plan_or_lab.plan
    if isinstance(plan_or_lab, LabPlan):
        nodes = {n.name: {"netns": n.netns, "site": n.site} for n in plan_or_lab.nodes.values()}
        links = [{"id": l.id, "name": l.name, "a": l.a, "b": l.b, "a_intf": l.a_intf,
                  "b_intf": l.b_intf, "wire": l.wire} for l in plan_or_lab.links]
    else:
        plan = plan_or_lab
        if not isinstance(plan, Mapping) or "links" not in plan or "nodes" not in plan:
            raise InputError("plan_or_lab", "expected a LabPlan, a Lab or a plan document, "
                             f"got {type(plan_or_lab).__name__}")
        nodes = plan["nodes"]
        links = plan["links"]
    out = []
    for link in links:
        a, b = nodes[link["a"]], nodes[link["b"]]
        if link.get("wire"):
            # (netns, ifname, stat) per direction: what the wire received from each end
            forward = (link["wire"], WIRE_PORT_A, "rx")
            reverse = (link["wire"], WIRE_PORT_B, "rx")
        else:
            forward = (a["netns"], link["a_intf"], "tx")
            reverse = (b["netns"], link["b_intf"], "tx")
        out.append({"id": link["id"], "name": link["name"], "a": link["a"], "b": link["b"],
                    "a_site": a.get("site"), "b_site": b.get("site"),
                    "wire": link.get("wire"), "forward": forward, "reverse": reverse})
    return out


def _read_stats(netns: str, ifnames: List[str]) -> Dict[str, dict]:
    """ifname -> IFLA_STATS64 for interfaces of one namespace, one socket."""
    out = {}
    with open_ns(netns) as ns:
        for ifname in ifnames:
            try:
                msg = ns.link("get", ifname=ifname)[0]
            except NetlinkError as exc:
                raise KernelError(f"reading counters of {ifname} in {netns}: {exc}",
                                  exc.code) from exc
            stats = msg.get_attr("IFLA_STATS64")
            if stats is None:
                raise KernelError(f"{ifname} in {netns} reports no IFLA_STATS64 counters")
            out[ifname] = stats
    return out


def link_bytes(plan_or_lab: Any) -> Dict[int, dict]:
    """Link id -> ``{"id", "name", "a", "b", "a_site", "b_site", "wire",
    "a_to_b_bytes", "b_to_a_bytes", "a_to_b_packets", "b_to_a_packets"}``.

    Counters since the interfaces were made (the lab came up); ``name`` is
    the link's profile name (several links may share one, e.g.
    ``transit-hop``), so links are keyed by id. Raises
    :class:`~testbed.errors.KernelError` if a namespace or interface is gone.
    """
    links = _links(plan_or_lab)
    wanted: Dict[str, List[str]] = {}
    for link in links:
        for netns, ifname, _ in (link["forward"], link["reverse"]):
            wanted.setdefault(netns, [])
            if ifname not in wanted[netns]:
                wanted[netns].append(ifname)
    stats = {netns: _read_stats(netns, ifnames) for netns, ifnames in wanted.items()}
    out: Dict[int, dict] = {}
    for link in links:
        record = {k: link[k] for k in ("id", "name", "a", "b", "a_site", "b_site", "wire")}
        for direction, (netns, ifname, side) in (("a_to_b", link["forward"]),
                                                 ("b_to_a", link["reverse"])):
            counters = stats[netns][ifname]
            record[f"{direction}_bytes"] = counters[f"{side}_bytes"]
            record[f"{direction}_packets"] = counters[f"{side}_packets"]
        out[link["id"]] = record
    return out


def delta(before: Mapping[Any, Mapping[str, Any]], after: Mapping[Any, Mapping[str, Any]]) -> Dict[Any, dict]:
    """What crossed between two :func:`link_bytes` readings of the same lab.

    Raises :class:`~testbed.errors.RunError` if the links differ or a counter
    went backwards (the lab was rebuilt in between).
    """
    if set(before) != set(after):
        raise RunError("link counters of different labs (or a rebuilt lab): links "
                       f"{sorted(before)} before, {sorted(after)} after")
    out: Dict[Any, dict] = {}
    for key, now in after.items():
        record = dict(now)
        for name in COUNTER_FIELDS:
            change = now[name] - before[key][name]
            if change < 0:
                raise RunError(f"counter {name} of link {now.get('name')} (id {key}) went "
                               f"backwards ({before[key][name]} -> {now[name]}): was the lab rebuilt?")
            record[name] = change
        out[key] = record
    return out
