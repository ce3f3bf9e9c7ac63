"""Applies event actions to a live lab and puts every link, profile and route back.

:class:`EventController` remembers what it changed, so :meth:`EventController.restore`
(always run in ``finally``) undoes it; the kernel operations themselves are in
:mod:`testbed.lab.linkops`.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import InputError, KernelError, RunError, TestbedError
from testbed.events.model import (
    IMPAIRMENTS, Action, Event, check_events, expand_events, merged_spec, runtime_problem)
from testbed.lab import linkops
from testbed.lab.build import BRIDGE, list_namespaces, open_ns, wait_ready
from testbed.lab.plan import WIRE_PORT_A, WIRE_PORT_B, LabPlan, LinkPlan, compute_routes
from testbed.profile import LinkSpec
from testbed.scale import scaled_profile
from testbed.shaping.htb import class_options, netem_leaf_place
from testbed.shaping.userspace import profile_doc, reconfigure

__all__ = ["EventController", "apply_event"]

class EventController:
    """Applies actions to one live lab and puts everything back in :meth:`restore`."""

    def __init__(self, lab, plan: Optional[LabPlan] = None):
        self.lab = lab
        self.plan = plan or LabPlan.from_dict(lab.doc["plan"])
        self.backend = getattr(lab, "backend", None)
        self.scale = float(getattr(lab, "scale", 1.0))
        self.down: Dict[int, LinkPlan] = {}  # link id -> link, cut by us
        self.failed_over: set = set()  # link names
        self.profiles: Dict[int, LinkSpec] = {}  # link id -> spec in force, where changed
        self.routes: Dict[str, Dict[str, str]] = {
            n.name: dict(n.routes) for n in self.plan.nodes.values() if n.role != "switch"}
        self._lock = threading.Lock()

    # -- helpers ----------------------------------------------------------
    def links_named(self, name: str) -> List[LinkPlan]:
        found = [l for l in self.plan.links if l.name == name]
        if not found:
            names = ", ".join(sorted({l.name for l in self.plan.links}))
            raise InputError("link", f"no link named {name!r} (links: {names})")
        return found

    def check(self, events: Sequence[Event], duration_s: Optional[float] = None,
              field: str = "events") -> None:
        check_events(events, self.plan, self.backend, duration_s, field)

    def apply(self, action: Action) -> dict:
        """Do ``action`` now; returns what was done (for the timeline's record)."""
        with self._lock:
            handler = getattr(self, f"_do_{action.kind}")
            return handler(action)

    def __enter__(self) -> "EventController":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    # -- link down / up -----------------------------------------------------
    def _switch_ends(self, link: LinkPlan) -> List[Tuple[str, str]]:
        """(switch netns, ifname) of an unshaped link's switch end(s)."""
        ends = []
        for name, ifname in ((link.a, link.a_intf), (link.b, link.b_intf)):
            node = self.plan.nodes[name]
            if node.role == "switch":
                ends.append((node.netns, ifname))
        return ends

    def _l3_ends(self, link: LinkPlan) -> List[Tuple[str, str]]:
        return [(self.plan.nodes[link.a].netns, link.a_intf), (self.plan.nodes[link.b].netns, link.b_intf)]

    def _cut(self, link: LinkPlan) -> None:
        if link.wire:
            linkops.set_state(link.wire, (BRIDGE,), "down")
            return
        ends = self._switch_ends(link)
        if ends:
            for netns, ifname in ends:
                linkops.set_master(netns, ifname, None)
        else:
            for netns, ifname in self._l3_ends(link):
                linkops.set_state(netns, (ifname,), "down")

    def _link_up(self, link: LinkPlan) -> None:
        if link.wire:
            linkops.set_state(link.wire, (BRIDGE,), "up")
        else:
            ends = self._switch_ends(link)
            if ends:
                for netns, ifname in ends:
                    linkops.set_master(netns, ifname, BRIDGE)
            else:
                for netns, ifname in self._l3_ends(link):
                    linkops.set_state(netns, (ifname,), "up")
                # both L3 ends were down: the kernel dropped the routes through them
                for name in (link.a, link.b):
                    linkops.replace_routes(self.plan.nodes[name].netns, self.routes[name])
        self.down.pop(link.id, None)

    def _do_link_down(self, action: Action) -> dict:
        links = self.links_named(action.link)
        for link in links:
            self._cut(link)
            self.down[link.id] = link
        return {"links": [l.id for l in links]}

    def _do_link_up(self, action: Action) -> dict:
        links = self.links_named(action.link)
        for link in links:
            self._link_up(link)
        return {"links": [l.id for l in links]}

    # -- profiles -------------------------------------------------------------
    def _current(self, link: LinkPlan) -> LinkSpec:
        return self.profiles.get(link.id, link.spec)

    def profile_in_force(self, link: LinkPlan) -> LinkSpec:
        """The spec ``link`` carries now (its configured one unless changed)."""
        return self._current(link)

    def put_profile(self, link: LinkPlan, new: LinkSpec, assume: Optional[LinkSpec] = None) -> None:
        """Put ``new`` on ``link`` now (``testbed set``); ``runtime_problem`` checked by the caller.

        ``assume``: the spec to treat as in force (undoing a change that
        failed half-way re-applies every piece in which ``assume`` and
        ``new`` differ).
        """
        with self._lock:
            self._put_spec(link, new, assume)

    def _do_set_profile(self, action: Action) -> dict:
        field = f"events.{action.event}.set_profile.profile"
        out = []
        for link in self.links_named(action.link):
            new = merged_spec(link.spec, action.profile or {}, field)
            problem = runtime_problem(link, new, self.backend)
            if problem:
                raise InputError(field, problem)
            self._put_spec(link, new)
            out.append(link.id)
        return {"links": out, "profile": new.to_user()}

    def _do_restore_profile(self, action: Action) -> dict:
        links = self.links_named(action.link)
        for link in links:
            if link.id in self.profiles:
                self._put_spec(link, link.spec)
        return {"links": [l.id for l in links]}

    def _put_spec(self, link: LinkPlan, new: LinkSpec, assume: Optional[LinkSpec] = None) -> None:
        old = assume if assume is not None else self._current(link)
        if not link.wire:
            if new != old:
                raise InputError("set_profile", f"link {link.name} is unshaped: nothing to change")
            return
        rtt_ms = link.spec.forward.delay_ms + link.spec.reverse.delay_ms  # as the lab was built
        line_docs: Dict[Tuple[int, str], dict] = {}
        with open_ns(link.wire) as ns:
            for port, direction in ((WIRE_PORT_B, "forward"), (WIRE_PORT_A, "reverse")):
                was = scaled_profile(getattr(old, direction), self.scale)
                now = scaled_profile(getattr(new, direction), self.scale)
                built = scaled_profile(getattr(link.spec, direction), self.scale)
                index = linkops.ifindex(ns, port, link.wire)
                try:
                    if now.rate_bps != was.rate_bps:
                        ns.tc("change-class", "htb", index=index, **class_options(now.rate_bps, link.mtu))
                    if any(getattr(was, k) != getattr(now, k) for k in IMPAIRMENTS):
                        if self.backend == "netem":  # the qdisc where the lab was built put it
                            parent, handle, limit_pkts = netem_leaf_place(built, rtt_ms, link.mtu)
                            linkops.netem_change(ns, index, parent, handle, now, limit_pkts)
                        else:
                            line_docs[(link.id, direction)] = profile_doc(now)
                except NetlinkError as exc:
                    raise KernelError(f"changing the profile of link {link.name} on "
                                      f"{link.wire}:{port}: {exc}", exc.code) from exc
        if line_docs:
            recs = [r for r in self.lab.proc_records()
                    if r.kind == "delayline" and r.netns == link.wire]
            if not recs:
                raise RunError(f"link {link.name} has no delay line in {link.wire}")
            reconfigure(recs[0], line_docs)
        if new == link.spec:
            self.profiles.pop(link.id, None)
        else:
            self.profiles[link.id] = new

    # -- routes -------------------------------------------------------------
    def _dark_subnets(self) -> List[ipaddress.IPv4Network]:
        """Subnets of unshaped L3-L3 links that are down: their interfaces are down too."""
        out = []
        for link in self.down.values():
            if link.wire or self._switch_ends(link):
                continue
            intf = next(i for i in self.plan.nodes[link.a].intfs if i.name == link.a_intf)
            if intf.address:
                out.append(ipaddress.IPv4Interface(intf.address).network)
        return out

    def _reroute(self) -> List[dict]:
        cut = {l.id for l in self.plan.links if l.name in self.failed_over}
        wanted = compute_routes(self.plan, cut)
        dark = self._dark_subnets()
        changes = []
        for name, routes in wanted.items():
            current = self.routes[name]
            target = {**current, **dict(routes)}
            diff = {s: v for s, v in target.items() if current.get(s) != v}
            if not diff:
                continue
            # a route through an interface that is down goes in when the link comes up
            now = {s: v for s, v in diff.items()
                   if not any(ipaddress.IPv4Address(v) in net for net in dark)}
            if now:
                linkops.replace_routes(self.plan.nodes[name].netns, now)
            for subnet, via in diff.items():
                changes.append({"node": name, "subnet": subnet, "from": current.get(subnet), "via": via})
            self.routes[name] = target
        return changes

    def _do_failover(self, action: Action) -> dict:
        self.links_named(action.link)
        self.failed_over.add(action.link)
        return {"routes_changed": self._reroute()}

    def _do_failback(self, action: Action) -> dict:
        self.links_named(action.link)
        self.failed_over.discard(action.link)
        return {"routes_changed": self._reroute()}

    # -- restore ------------------------------------------------------------
    def changed(self) -> bool:
        return bool(self.down or self.failed_over or self.profiles)

    def restore(self, wait_s: float = 10.0) -> List[str]:
        """Every link up, configured profiles, the plan's routes; raises RunError on failure.

        Tries every piece even when one fails. Pieces of a lab whose
        namespaces are already gone (destroyed meanwhile) are not errors.
        """
        errors: List[str] = []
        with self._lock:
            touched = bool(self.down)
            for link_id in list(self.profiles):
                link = next(l for l in self.plan.links if l.id == link_id)
                self._attempt(errors, f"profile of {link.name}", lambda l=link: self._put_spec(l, l.spec))
            for link in list(self.down.values()):
                self._attempt(errors, f"link {link.name} up", lambda l=link: self._link_up(l))
            if self.failed_over:
                self.failed_over.clear()
                self._attempt(errors, "routes", self._reroute)
            if touched and not errors:
                self._attempt(errors, "links ready", lambda: wait_ready(self.plan, wait_s))
        if errors and self._lab_present():
            raise RunError("restoring the lab after events failed: " + "; ".join(errors))
        return errors

    @staticmethod
    def _attempt(errors: List[str], what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (TestbedError, NetlinkError, OSError) as exc:
            errors.append(f"{what}: {exc}")

    def _lab_present(self) -> bool:
        try:
            present = set(list_namespaces())
        except OSError:
            return True
        return all(n.netns in present for n in self.plan.nodes.values())


def apply_event(lab, event: Event, controller: Optional[EventController] = None) -> dict:
    """Apply ``event``'s action to ``lab`` now (its ``until_s`` is the caller's to schedule).

    Pass a ``controller`` to be able to restore later; without one, nothing
    remembers the change.
    """
    ctl = controller or EventController(lab)
    action = expand_events([event])[0]
    return ctl.apply(action)
