"""The events model: what a timeline says, parsed, expanded and checked against a plan.

Scenario files give events as YAML (docs/events.md); :func:`parse_events`
validates them into :class:`Event` objects (an InputError names the field),
:func:`expand_events` turns them into timed :class:`Action` objects (with the
undoing action that ``until_s`` adds), and :func:`check_events` checks them
against a lab's plan before anything is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from testbed.errors import InputError
from testbed.lab.plan import LabPlan, LinkPlan, compute_routes
from testbed.profile import LinkSpec, resolve_link

__all__ = [
    "Event", "SetProfile", "Action", "ACTIONS", "DISRUPTIVE", "UNDO", "IMPAIRMENTS",
    "parse_events", "expand_events", "check_events", "merged_spec", "runtime_problem",
]

#: Every action, in the order an event may name them.
ACTIONS = ("link_down", "link_up", "set_profile", "restore_profile", "failover", "failback")
#: Actions that disturb traffic (the timeline analyses these).
DISRUPTIVE = ("link_down", "set_profile", "failover")
#: The action that undoes each disruptive one (what ``until_s`` schedules).
UNDO = {"link_down": "link_up", "set_profile": "restore_profile", "failover": "failback"}
MAX_AT_S = 86_400.0
_LINK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")
# Fields a set_profile may change at runtime; the rest are fixed when the lab is built.
IMPAIRMENTS = ("delay_ms", "jitter_ms", "jitter_distribution", "correlation_pct", "loss_pct",
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


def runtime_problem(link: LinkPlan, new: LinkSpec, backend: Optional[str]) -> Optional[str]:
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
        changed = any(getattr(old, k) != getattr(fresh, k) for k in IMPAIRMENTS)
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
                problem = runtime_problem(link, new, backend)
                if problem:
                    raise InputError(pfield, problem)
        if kind == "failover":
            after = compute_routes(plan, {l.id for l in by_name[ev.link]})
            if all(before[n] == {**before[n], **dict(after[n])} for n in before):
                raise InputError(link_field, f"failing over {ev.link} moves no route (no other "
                                 "path between its ends, or no route uses it)")
