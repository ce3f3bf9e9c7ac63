"""A running lab's links changed live (``testbed set``) and shown as they are now (``testbed show``).

``testbed set LAB LINK.FIELD=VALUE ...`` is containerlab's ``tools netem set``
for a whole lab: every item is checked first (link name, field, value, and
that the change is possible at runtime: :func:`~testbed.events.model.runtime_problem`),
then the links are changed one by one through the events engine's
:class:`~testbed.events.controller.EventController` -- an htb class change
for the rate, a netem qdisc change or the userspace delay line's runtime
reload for the impairments. If one link fails, the links already changed
(and the failed one's pieces) are put back: all or nothing.

The profile now in force is recorded in the lab's state (``lab.json``, key
:data:`IN_FORCE_KEY`: link id -> the user form of its spec, only for links
that differ from how the lab was built), so ``show`` and the next ``set``
start from it. Items lay over the profile in force: ``LINK.delay=30ms``
changes the delay of both directions and leaves the rest as it is now,
``LINK.forward.delay=30ms`` one direction; ``LINK=configured`` puts back the
profile the lab was built with.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from testbed.errors import InputError, RunError, TestbedError
from testbed.events.controller import EventController
from testbed.events.model import merged_spec, runtime_problem
from testbed.lab import state
from testbed.lab.lab import Lab
from testbed.lab.plan import LabPlan, LinkPlan
from testbed.overrides import parse_override
from testbed.profile import USER_FIELDS, LinkSpec, resolve_link
from testbed.shaping.userspace import config_path, profile_doc, read_stats

__all__ = ["IN_FORCE_KEY", "RESET_WORD", "SetChange", "parse_set_items", "in_force", "apply_set",
           "show_doc", "render_show", "profile_text", "line_mismatches"]

#: lab.json key: link id (as text) -> user-form spec in force, for links changed since the build
IN_FORCE_KEY = "profiles_now"
#: ``LINK=configured``: put back the profile the lab was built with
RESET_WORD = "configured"
_SOURCE = "set"


class SetChange:
    """One link's change: the link, its spec before and the spec asked for."""

    def __init__(self, link: LinkPlan, before: LinkSpec, after: LinkSpec, items: List[str]):
        self.link, self.before, self.after, self.items = link, before, after, items

    def to_dict(self) -> dict:
        return {"link": self.link.name, "id": self.link.id, "items": list(self.items),
                "before": self.before.to_user(), "after": self.after.to_user()}


def in_force(doc: Mapping, plan: LabPlan) -> Dict[int, LinkSpec]:
    """Link id -> spec in force, for the links of ``plan`` whose profile was changed live."""
    out: Dict[int, LinkSpec] = {}
    by_id = {l.id: l for l in plan.links}
    for key, user in (doc.get(IN_FORCE_KEY) or {}).items():
        link_id = int(key)
        if link_id in by_id:
            out[link_id] = resolve_link(user, f"{IN_FORCE_KEY}.{key}")
    return out


def _split_key(key: str, names: Sequence[str]) -> Tuple[str, List[str]]:
    """(link name, rest of the dotted key); link names may contain dots: the longest wins."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in names:
            return name, parts[end:]
    raise InputError(key, f"no link named {parts[0]!r} (links: {', '.join(sorted(names))})",
                     source=_SOURCE)


def _item_change(key: str, rest: List[str], value) -> dict:
    """The user-form change one item asks for (``{"forward": {"delay": "30ms"}}``)."""
    fields = ", ".join(USER_FIELDS)
    if len(rest) == 1 and rest[0] in USER_FIELDS:
        return {rest[0]: value}
    if len(rest) == 2 and rest[0] in ("forward", "reverse") and rest[1] in USER_FIELDS:
        return {rest[0]: {rest[1]: value}}
    if len(rest) == 1 and rest[0] == "preset":
        return {"preset": value}
    if rest and rest[0] in ("forward", "reverse"):
        raise InputError(key, f"expected {rest[0]}.FIELD with FIELD one of {fields}", source=_SOURCE)
    raise InputError(key, f"unknown field {'.'.join(rest)!r}; expected LINK.FIELD, "
                     f"LINK.forward.FIELD or LINK.reverse.FIELD with FIELD one of {fields}, "
                     f"LINK.preset=NAME or LINK={RESET_WORD}", source=_SOURCE)


def _merge(into: dict, change: Mapping) -> None:
    for k, v in change.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            into[k].update(v)
        else:
            into[k] = dict(v) if isinstance(v, Mapping) else v


def parse_set_items(items: Sequence[str], plan: LabPlan, now: Mapping[int, LinkSpec],
                    backend: Optional[str]) -> List[SetChange]:
    """Every item checked, then one :class:`SetChange` per link to change (in item order).

    InputError (exit 2) names the item's key: an unknown link or field, a
    bad value, or a change that cannot be made while the lab runs.
    """
    if not items:
        raise InputError("items", "give at least one LINK.FIELD=VALUE (e.g. link.delay=30ms)",
                         source=_SOURCE)
    names = sorted({l.name for l in plan.links})
    wanted: Dict[str, dict] = {}
    reset: Dict[str, bool] = {}
    keys: Dict[str, List[str]] = {}
    for item in items:
        key, value = parse_override(item, source=_SOURCE)
        name, rest = _split_key(key, names)
        keys.setdefault(name, []).append(item)
        if not rest:
            if value != RESET_WORD:
                raise InputError(key, f"give LINK.FIELD=VALUE, or {key}={RESET_WORD} to put back "
                                 "the profile the lab was built with", source=_SOURCE)
            reset[name], wanted[name] = True, {}
            continue
        change = _item_change(key, rest, value)
        for link in (l for l in plan.links if l.name == name):  # this item alone, named by its key
            base = link.spec if reset.get(name) else now.get(link.id, link.spec)
            try:
                alone = merged_spec(base, change, key)
            except InputError as exc:  # name the item's key, not the profile's inner path
                raise InputError(key, exc.message, source=_SOURCE) from None
            problem = runtime_problem(link, alone, backend)
            if problem:
                raise InputError(key, problem, source=_SOURCE)
        if "preset" in change:
            wanted[name] = dict(change)
        else:
            _merge(wanted.setdefault(name, {}), change)
    out: List[SetChange] = []
    for name, change in wanted.items():
        for link in (l for l in plan.links if l.name == name):
            before = now.get(link.id, link.spec)
            base = link.spec if reset.get(name) else before
            after = merged_spec(base, change, name) if change else base
            problem = runtime_problem(link, after, backend)
            if problem:  # items fine alone, not together
                raise InputError(name, problem, source=_SOURCE)
            if after != before:
                out.append(SetChange(link, before, after, keys[name]))
    return out


@contextmanager
def _lab_lock(lab: str) -> Iterator[None]:
    """One ``testbed set`` at a time per lab (a lock file in the lab's state directory)."""
    path = state.lab_dir(lab) / "set.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def apply_set(name: str, items: Sequence[str]) -> List[SetChange]:
    """Check every item, change the links of lab ``name``, record the result; all or nothing.

    Returns the changes made (empty: nothing differed from what is in force).
    """
    Lab.attach(name)  # no such lab: say so before taking its lock
    with _lab_lock(name):
        lab = Lab.attach(name)  # re-read under the lock: another set may have run
        if lab.doc.get("status") != "up":
            raise InputError("lab", f"lab {name!r} is {lab.doc.get('status')!r}, not up")
        if lab.doc.get("cluster"):
            raise InputError("lab", f"lab {name!r} runs across machines: 'testbed set' changes wires "
                             "on this machine only (docs/scale-out.md#limits); bring it up again with "
                             "the new profile")
        plan = lab.plan
        ctl = EventController(lab, plan)
        ctl.profiles.update(in_force(lab.doc, plan))
        changes = parse_set_items(items, plan, dict(ctl.profiles), lab.backend)
        if not changes:
            return []
        lab.check()  # a dead delay line: say so before changing anything
        done: List[SetChange] = []
        current: Optional[SetChange] = None
        try:
            for change in changes:
                current = change
                ctl.put_profile(change.link, change.after)
                done.append(change)
                current = None
            lab.doc[IN_FORCE_KEY] = {str(i): s.to_user() for i, s in sorted(ctl.profiles.items())}
            state.write_state(name, lab.doc)
        except BaseException as exc:
            problems, half = _undo(ctl, done, current)
            if problems:
                raise RunError(f"{exc}; putting back the links already changed failed too: "
                               + "; ".join(problems) + " (the lab's state keeps the old profiles)") from exc
            if isinstance(exc, (TestbedError, OSError)):  # OSError: the state could not be written
                note = "" if half is None else f"; undoing the half-made change failed too: {half}"
                raise RunError(f"{exc} (nothing recorded: the links already changed were put back{note})") from exc
            raise
        return changes


def _undo(ctl: EventController, done: List[SetChange],
          failed: Optional[SetChange]) -> Tuple[List[str], Optional[str]]:
    """Put the changed links back; (problems with those, problem undoing the failed one or None).

    The link whose change failed may be half changed (its rate changed, its
    delay line not): every piece in which the two specs differ is re-applied.
    That can fail for the reason the change failed; it is reported apart.
    """
    problems = []
    for change in reversed(done):
        try:
            ctl.put_profile(change.link, change.before, assume=change.after)
        except (TestbedError, OSError) as exc:
            problems.append(f"{change.link.name}: {exc}")
    half = None
    if failed is not None:
        try:
            ctl.put_profile(failed.link, failed.before, assume=failed.after)
        except (TestbedError, OSError) as exc:
            half = f"{failed.link.name}: {exc}"
    return problems, half


# ---------------------------------------------------------------- show


def line_mismatches(lab, plan: LabPlan) -> List[str]:
    """Where the userspace delay lines do not run the profile the lab's state records.

    Read from each line's own config (what it was told) and stats (the
    generation it runs); empty when they agree, and for the netem backend.
    """
    if lab.backend != "userspace":
        return []
    now = in_force(lab.doc, plan)
    by_id = {l.id: l for l in plan.links}
    out = []
    for rec in lab.proc_records():
        if rec.kind != "delayline":
            continue
        try:
            cfg = json.loads(config_path(rec).read_text())
        except (OSError, ValueError, RunError) as exc:
            out.append(f"delay line in {rec.netns}: its config cannot be read ({exc})")
            continue
        running = read_stats(rec).get("generation")
        if running is not None and int(running) < int(cfg.get("generation", 0)):
            out.append(f"delay line in {rec.netns} runs generation {running}, its config is "
                       f"{cfg.get('generation')}")
        for queue in cfg.get("queues", []):
            link = by_id.get(queue.get("link_id"))
            if link is None:
                continue
            want = profile_doc(getattr(now.get(link.id, link.spec), queue["direction"]))
            if queue.get("profile") != want:
                out.append(f"link {link.name} {queue['direction']}: the delay line in {rec.netns} "
                           "runs another profile than the state records")
    return out



def _direction_doc(profile) -> dict:
    return profile.to_user()


def show_doc(doc: Mapping, plan: LabPlan) -> dict:
    """Nodes, links, interfaces and each link's profile per direction now (``show --json``)."""
    now = in_force(doc, plan)
    nodes = []
    for node in sorted(plan.nodes.values(), key=lambda n: n.name):
        nodes.append({
            "name": node.name, "role": node.role, "site": node.site, "netns": node.netns,
            "interfaces": [{"name": i.name, "address": i.address, "mtu": i.mtu,
                            "peer": f"{i.peer_node}:{i.peer_intf}"} for i in node.intfs],
        })
    links = []
    for link in plan.links:
        spec = now.get(link.id, link.spec)
        links.append({
            "id": link.id, "name": link.name, "a": f"{link.a}:{link.a_intf}",
            "b": f"{link.b}:{link.b_intf}", "wire": link.wire, "mtu": link.mtu,
            "changed": link.id in now,
            "forward": _direction_doc(spec.forward), "reverse": _direction_doc(spec.reverse),
            "configured": {"forward": _direction_doc(link.spec.forward),
                           "reverse": _direction_doc(link.spec.reverse)},
        })
    return {"lab": doc.get("lab"), "topology": doc.get("topology"), "status": doc.get("status"),
            "backend": doc.get("backend"), "block": doc.get("block"),
            "scale": doc.get("scale", 1.0), "nodes": nodes, "links": links}


_COLUMNS = ("rate", "delay", "jitter", "loss", "reorder", "corrupt", "duplicate", "queue")


def profile_text(user: Mapping) -> str:
    """One direction's profile in a few words: ``rate 1Gbit, delay 20ms, loss 0.1%``."""
    parts = [f"{k} {user[k]}" for k in user if user.get(k) is not None]
    return ", ".join(parts) or "unshaped"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
            for row in [header, *rows]]


def render_show(view: Mapping) -> str:
    """``testbed show``'s text: containerlab's netem table per link direction, plus nodes."""
    scale = float(view.get("scale") or 1.0)
    head = (f"lab {view['lab']}: {view.get('topology')}, {view.get('status')}, "
            f"{view.get('backend')} backend, block {view.get('block')}"
            + (f", rates scaled 1/{scale:g}" if scale != 1 else ""))
    lines = [head, "", "nodes:"]
    rows = []
    for node in view["nodes"]:
        intfs = node["interfaces"] or [{"name": "-", "address": None, "peer": "-"}]
        for index, intf in enumerate(intfs):
            first = index == 0
            rows.append([node["name"] if first else "", node["role"] if first else "",
                         (node["site"] or "-") if first else "", intf["name"],
                         intf.get("address") or "-", intf["peer"]])
    lines += _table(["NODE", "ROLE", "SITE", "INTERFACE", "ADDRESS", "PEER"], rows)
    lines += ["", "links (profile in force now; * = changed by 'testbed set'):"]
    rows = []
    for link in view["links"]:
        for direction, ends in (("forward", f"{link['a']} -> {link['b']}"),
                                ("reverse", f"{link['b']} -> {link['a']}")):
            user = link[direction]
            rows.append([f"{link['name']}{'*' if link['changed'] else ''}", ends, direction,
                         *(str(user.get(c) or "-") for c in _COLUMNS)])
    lines += _table(["LINK", "ENDS", "DIRECTION", *(c.upper() for c in _COLUMNS)], rows)
    return "\n".join(lines)
