"""Events over time: links cut and restored, profiles changed, routes failed over.

A timeline is a list of events, each at ``at_s`` seconds from the start of
the step, each with exactly one action on the links of one profile name
(``cw-gcp``: every link of that name)::

    - {at_s: 2, link_down: cw-gcp, until_s: 4}          # cut, up again at 4 s
    - {at_s: 3, failover: cw-gcp}                         # routes avoid cw-gcp
    - {at_s: 5, set_profile: {link: cw-gcp, profile: {delay: 40ms, jitter: 5ms, loss: 1%}},
       until_s: 7}                                        # a congestion episode
    - {at_s: 7, failback: cw-gcp}

What each action does in the kernel (docs/events.md has the whole story):

* ``link_down`` / ``link_up``: a shaped link's wire bridge (``br0`` in
  ``tb.<lab>._w<id>``) goes down / up. Both ends keep their carrier, their
  routes and their neighbour entries and send into a black hole, like
  routers behind a fibre cut in the carrier's network (setting the wire's
  ports down instead makes the ends lose carrier, and the kernel then holds
  packets for up to 3 s waiting for ARP and delivers them late: measured,
  ping saw 2 s RTTs and no loss). An unshaped link has no wire: its switch
  end(s) leave their bridge; between two L3 nodes both veth ends go down
  (the kernel drops the routes through them, put back on ``link_up``; the
  routers answer with ICMP unreachable instead of silence).
* ``set_profile``: the given fields over the configured profile; rate by an
  htb class change on the wire port, impairments by the delay backend
  (netem: a netlink change of the netem qdisc; userspace: the delay line
  reloads its config). ``restore_profile`` goes back to the configured one.
* ``failover`` / ``failback``: shortest-path routes recomputed from the
  lab's plan without (with) the link (:func:`testbed.lab.plan.compute_routes`);
  the routes that differ are replaced on the nodes that hold them.

``until_s`` on ``link_down``, ``set_profile`` or ``failover`` adds the undoing
action (``link_up``, ``restore_profile``, ``failback``) at that time.

:class:`EventController` applies actions to a live lab and remembers what it
changed, so :meth:`EventController.restore` (always run in ``finally``) puts
back every link, profile and route. :class:`Scheduler` fires actions at their
times on a monotonic clock in a thread, recording when each really fired.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import InputError, KernelError, RunError, TestbedError
from testbed.lab.build import BRIDGE, list_namespaces, open_ns, wait_ready
from testbed.lab.plan import WIRE_PORT_A, WIRE_PORT_B, LabPlan, LinkPlan, compute_routes
from testbed.profile import LinkSpec, resolve_link
from testbed.scale import scaled_profile
from testbed.shaping.htb import class_options, netem_leaf_place
from testbed.shaping.netem import netem_qdisc_msg, netem_request, send_qdisc_msg
from testbed.shaping.userspace import profile_doc, reconfigure

__all__ = [
    "Event",
    "SetProfile",
    "Action",
    "ACTIONS",
    "DISRUPTIVE",
    "UNDO",
    "parse_events",
    "expand_events",
    "check_events",
    "merged_spec",
    "netem_change_msg",
    "EventController",
    "apply_event",
    "Scheduler",
]

#: Every action, in the order an event may name them.
ACTIONS = ("link_down", "link_up", "set_profile", "restore_profile", "failover", "failback")
#: Actions that disturb traffic (the timeline analyses these).
DISRUPTIVE = ("link_down", "set_profile", "failover")
#: The action that undoes each disruptive one (what ``until_s`` schedules).
UNDO = {"link_down": "link_up", "set_profile": "restore_profile", "failover": "failback"}
MAX_AT_S = 86_400.0
ROUTE_RETRY_S = 2.0
_LINK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
# Fields a set_profile may change at runtime; the rest are fixed when the lab is built.
_IMPAIRMENTS = ("delay_ms", "jitter_ms", "jitter_distribution", "correlation_pct", "loss_pct",
                "loss_model", "loss_burst_pkts", "reorder_pct")
_FIXED = {"mtu": "mtu", "queue": "queue", "duplicate_pct": "duplicate", "corrupt_pct": "corrupt"}

def _link_name(value: str) -> str:
    if not _LINK_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a link name (1-64 letters, digits and _.+-)")
    return value


LinkName = Annotated[str, AfterValidator(_link_name)]


# ------------------------------------------------------------------ the model


class SetProfile(BaseModel):
    """``set_profile``: a link and the profile fields to lay over its configured profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    link: LinkName
    profile: Dict[str, Any]


class Event(BaseModel):
    """One event: when (``at_s``), one action, and optionally when to undo it (``until_s``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(ge=0, le=MAX_AT_S, allow_inf_nan=False)
    until_s: Optional[float] = Field(default=None, gt=0, le=MAX_AT_S, allow_inf_nan=False)
    label: Optional[str] = Field(default=None, min_length=1, max_length=60)
    link_down: Optional[LinkName] = None
    link_up: Optional[LinkName] = None
    set_profile: Optional[SetProfile] = None
    restore_profile: Optional[LinkName] = None
    failover: Optional[LinkName] = None
    failback: Optional[LinkName] = None

    @model_validator(mode="after")
    def _one_action(self) -> "Event":
        given = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"an event needs exactly one action of {', '.join(ACTIONS)}"
                             + (f", got {', '.join(given)}" if given else ""))
        if self.until_s is not None:
            if given[0] not in UNDO:
                raise ValueError(f"until_s: only {', '.join(UNDO)} can be undone by until_s")
            if self.until_s <= self.at_s:
                raise ValueError(f"until_s: must be after at_s ({self.at_s:g})")
        return self

    @property
    def action(self) -> str:
        return next(name for name in ACTIONS if getattr(self, name) is not None)

    @property
    def link(self) -> str:
        value = getattr(self, self.action)
        return value.link if isinstance(value, SetProfile) else value


def _error_field(prefix: str, loc: Sequence) -> str:
    parts = [str(p) for p in loc]
    return ".".join([prefix] + parts)


def parse_events(raw: Any, field: str = "events") -> List[Event]:
    """Validate a user's event list; InputError naming ``events.<i>.<field>``."""
    if raw is None:
        return []
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        raise InputError(field, f"must be a list of events, got {type(raw).__name__}")
    out = []
    for index, item in enumerate(raw):
        where = f"{field}.{index}"
        if isinstance(item, Event):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InputError(where, f"an event must be a mapping, got {type(item).__name__}")
        try:
            out.append(Event.model_validate(dict(item)))
        except ValidationError as exc:
            first = exc.errors()[0]
            message = first["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
            loc = list(first.get("loc") or ())
            match = re.match(r"^(\w+): (.*)$", message)
            if not loc and match and match.group(1) in Event.model_fields:
                loc, message = [match.group(1)], match.group(2)
            raise InputError(_error_field(where, loc), message) from None
    return out


@dataclass(frozen=True)
class Action:
    """One thing to do at one time (an event's action, or the undoing that ``until_s`` adds)."""

    at_s: float
    kind: str
    link: str
    event: int  # index of the event it comes from
    profile: Optional[Mapping[str, Any]] = None  # set_profile only
    label: str = ""

    def to_dict(self) -> dict:
        out = {"event": self.event, "kind": self.kind, "link": self.link, "at_s": self.at_s,
               "label": self.label}
        if self.profile is not None:
            out["profile"] = dict(self.profile)
        return out


def expand_events(events: Iterable[Event]) -> List[Action]:
    """Every action in time order; at equal times undos first, then the list's order."""
    items: List[Tuple[float, int, int, Action]] = []
    for index, ev in enumerate(events):
        kind = ev.action
        profile = ev.set_profile.profile if ev.set_profile is not None else None
        label = ev.label or f"{kind} {ev.link}"
        items.append((ev.at_s, 1, index, Action(ev.at_s, kind, ev.link, index, profile, label)))
        if ev.until_s is not None:
            undo = UNDO[kind]
            items.append((ev.until_s, 0, index,
                          Action(ev.until_s, undo, ev.link, index, None, f"{undo} {ev.link}")))
    items.sort(key=lambda t: (t[0], t[1], t[2]))
    return [t[3] for t in items]


# ------------------------------------------------------------ validation


def merged_spec(configured: LinkSpec, given: Mapping[str, Any], field: str) -> LinkSpec:
    """``given`` (user form) laid over ``configured``; a ``preset`` replaces it whole.

    Shared fields apply to both directions, ``forward``/``reverse`` to one.
    """
    if not isinstance(given, Mapping):
        raise InputError(field, f"expected a mapping of link fields, got {type(given).__name__}")
    if given.get("preset") is not None:
        return resolve_link(dict(given), field)
    shared = {k: v for k, v in given.items() if k not in ("forward", "reverse", "preset")}
    out = {}
    for direction in ("forward", "reverse"):
        own = given.get(direction) or {}
        if not isinstance(own, Mapping):
            raise InputError(f"{field}.{direction}", "expected a mapping of link fields")
        base = getattr(configured, direction).to_user()
        out[direction] = resolve_link({**base, **shared, **own}, field).forward
    return LinkSpec(forward=out["forward"], reverse=out["reverse"])


def _runtime_problem(link: LinkPlan, new: LinkSpec, backend: Optional[str]) -> Optional[str]:
    """Why ``new`` cannot be put on ``link`` while the lab runs (None: it can)."""
    for direction in ("forward", "reverse"):
        old, fresh = getattr(link.spec, direction), getattr(new, direction)
        for canon, user in _FIXED.items():
            if getattr(old, canon) != getattr(fresh, canon):
                return f"{user} of link {link.name} cannot change at runtime (only rate, " \
                       "delay, jitter, correlation, loss and reorder can)"
        if old.rate_bps is None and fresh.rate_bps is not None:
            return (f"link {link.name} has no rate limit to change ({direction} configured "
                    "unshaped); give it a rate in its profile")
        if old.rate_bps is not None and fresh.rate_bps is None:
            return f"the rate limit of link {link.name} cannot be removed at runtime"
        changed = any(getattr(old, k) != getattr(fresh, k) for k in _IMPAIRMENTS)
        if changed and not old.has_impairment:
            where = "netem qdisc" if backend == "netem" else "delay line"
            return (f"{direction} of link {link.name} has no {where} to change (configured "
                    "without delay, jitter or loss); give it a small delay (e.g. 0.1ms)")
    return None


def check_events(events: Sequence[Event], plan: LabPlan, backend: Optional[str] = None,
                 duration_s: Optional[float] = None, field: str = "events") -> None:
    """Check ``events`` against a lab's plan before anything runs.

    Link names must exist (the error lists the known ones), ``set_profile``
    must give a valid profile that can change at runtime, a ``failover``
    must move at least one route, and with ``duration_s`` every time must
    fall inside the step.
    """
    names = sorted({l.name for l in plan.links})
    by_name: Dict[str, List[LinkPlan]] = {}
    for link in plan.links:
        by_name.setdefault(link.name, []).append(link)
    # compute_routes with no link cut gives the plan's own routes: read them, once
    before = {n.name: dict(n.routes) for n in plan.nodes.values() if n.role != "switch"}
    for index, ev in enumerate(events):
        where = f"{field}.{index}"
        kind = ev.action
        link_field = f"{where}.{kind}" + (".link" if kind == "set_profile" else "")
        if ev.link not in by_name:
            raise InputError(link_field, f"no link named {ev.link!r} (links: {', '.join(names)})")
        if duration_s is not None:
            if ev.at_s >= duration_s:
                raise InputError(f"{where}.at_s", f"{ev.at_s:g} s is not inside the step's "
                                 f"{duration_s:g} s")
            if ev.until_s is not None and ev.until_s > duration_s:
                raise InputError(f"{where}.until_s", f"{ev.until_s:g} s is after the step's "
                                 f"end ({duration_s:g} s)")
        if kind == "set_profile":
            pfield = f"{where}.set_profile.profile"
            for link in by_name[ev.link]:
                new = merged_spec(link.spec, ev.set_profile.profile, pfield)
                problem = _runtime_problem(link, new, backend)
                if problem:
                    raise InputError(pfield, problem)
        if kind == "failover":
            after = compute_routes(plan, {l.id for l in by_name[ev.link]})
            if all(before[n] == {**before[n], **dict(after[n])} for n in before):
                raise InputError(link_field, f"failing over {ev.link} moves no route (no other "
                                 "path between its ends, or no route uses it)")


# ------------------------------------------------------------ kernel pieces


_CHANGE_FLAGS = NLM_F_REQUEST | NLM_F_ACK


def netem_change_msg(ifindex: int, parent: Optional[int], handle: int, profile, limit_pkts: int):
    """(message, flags) changing the netem qdisc ``handle`` to ``profile``.

    The same message :class:`~testbed.shaping.netem.NetemBackend` adds with,
    sent without NLM_F_CREATE/NLM_F_EXCL: ``tc qdisc change`` (the kernel
    refuses if no such qdisc exists, and keeps its queue).
    """
    return netem_qdisc_msg(ifindex, parent, handle, netem_request(profile, limit_pkts)), _CHANGE_FLAGS


def _netem_change(ns, ifindex: int, parent: Optional[int], handle: int, profile, limit_pkts: int) -> None:
    send_qdisc_msg(ns, *netem_change_msg(ifindex, parent, handle, profile, limit_pkts))


def _index(ns, ifname: str, where: str) -> int:
    found = ns.link_lookup(ifname=ifname)
    if not found:
        raise KernelError(f"interface {ifname} not found in {where}")
    return found[0]


def _set_state(netns: str, ifnames: Sequence[str], state: str) -> None:
    with open_ns(netns) as ns:
        for ifname in ifnames:
            try:
                ns.link("set", index=_index(ns, ifname, netns), state=state)
            except NetlinkError as exc:
                raise KernelError(f"setting {netns}:{ifname} {state}: {exc}", exc.code) from exc


def _set_master(netns: str, ifname: str, bridge: Optional[str]) -> None:
    """Attach ``ifname`` to ``bridge`` (a name in the same namespace) or detach it (None)."""
    with open_ns(netns) as ns:
        try:
            master = _index(ns, bridge, netns) if bridge else 0
            ns.link("set", index=_index(ns, ifname, netns), master=master)
        except NetlinkError as exc:
            what = f"to {bridge}" if bridge else "from its bridge"
            raise KernelError(f"moving {netns}:{ifname} {what}: {exc}", exc.code) from exc


def _replace_routes(netns: str, routes: Mapping[str, str]) -> None:
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


# ------------------------------------------------------------ the controller


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
            _set_state(link.wire, (BRIDGE,), "down")
            return
        ends = self._switch_ends(link)
        if ends:
            for netns, ifname in ends:
                _set_master(netns, ifname, None)
        else:
            for netns, ifname in self._l3_ends(link):
                _set_state(netns, (ifname,), "down")

    def _link_up(self, link: LinkPlan) -> None:
        if link.wire:
            _set_state(link.wire, (BRIDGE,), "up")
        else:
            ends = self._switch_ends(link)
            if ends:
                for netns, ifname in ends:
                    _set_master(netns, ifname, BRIDGE)
            else:
                for netns, ifname in self._l3_ends(link):
                    _set_state(netns, (ifname,), "up")
                # both L3 ends were down: the kernel dropped the routes through them
                for name in (link.a, link.b):
                    _replace_routes(self.plan.nodes[name].netns, self.routes[name])
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

    def _do_set_profile(self, action: Action) -> dict:
        field = f"events.{action.event}.set_profile.profile"
        out = []
        for link in self.links_named(action.link):
            new = merged_spec(link.spec, action.profile or {}, field)
            problem = _runtime_problem(link, new, self.backend)
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

    def _put_spec(self, link: LinkPlan, new: LinkSpec) -> None:
        old = self._current(link)
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
                index = _index(ns, port, link.wire)
                try:
                    if now.rate_bps != was.rate_bps:
                        ns.tc("change-class", "htb", index=index, **class_options(now.rate_bps, link.mtu))
                    if any(getattr(was, k) != getattr(now, k) for k in _IMPAIRMENTS):
                        if self.backend == "netem":  # the qdisc where the lab was built put it
                            parent, handle, limit_pkts = netem_leaf_place(built, rtt_ms, link.mtu)
                            _netem_change(ns, index, parent, handle, now, limit_pkts)
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
                _replace_routes(self.plan.nodes[name].netns, now)
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


# ------------------------------------------------------------ the scheduler


class Scheduler:
    """Fires actions at ``t0 + at_s`` on a monotonic clock and records when they fired.

    ``clock`` and ``wait`` are injectable (a fake clock in tests); ``wait``
    sleeps up to its argument and returns True when asked to stop.
    """

    MAX_WAIT_S = 0.05

    def __init__(self, actions: Sequence[Action], apply: Callable[[Action], dict],
                 clock: Callable[[], float] = time.monotonic,
                 wait: Optional[Callable[[float], bool]] = None):
        self.actions = list(actions)
        self.apply = apply
        self.clock = clock
        self._stop = threading.Event()
        self.wait = wait or self._stop.wait
        self.records: List[dict] = []
        self.error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    def run(self, t0: float) -> None:
        """Fire every action in order; returns after the last or when stopped or one failed."""
        for action in self.actions:
            due = t0 + action.at_s
            while True:
                remaining = due - self.clock()
                if remaining <= 0:
                    break
                if self.wait(min(remaining, self.MAX_WAIT_S)) or self._stop.is_set():
                    return
            fired = self.clock()
            record = {**action.to_dict(), "planned_s": action.at_s, "actual_s": round(fired - t0, 4)}
            record.pop("at_s")
            try:
                detail = self.apply(action) or {}
            except BaseException as exc:  # handed to the measurement, which raises it
                record["error"] = str(exc)
                self.records.append(record)
                self.error = exc
                return
            record["applied_s"] = round(self.clock() - fired, 4)
            record.update({k: v for k, v in detail.items() if k not in record})
            self.records.append(record)

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self.run, args=(t0,), name="testbed-events",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fire nothing more; wait for an action being applied to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RunError(f"an event did not finish applying within {timeout_s:g} s")

    @property
    def done(self) -> bool:
        return len(self.records) == len(self.actions) or self.error is not None
