"""Events over time without a kernel: the model, the schedule, routes with a link cut,
what the controller asks of the kernel, and the delay line's reload.

Oracles:

* routes: a hop-by-hop forwarder walking the computed routes (as the kernel
  would: connected subnets first, then the longest matching route);
* netem change: the bytes iproute2's ``tc qdisc change`` (6.1.0) sent for
  ``limit 1000 delay 15ms loss random 0.1%`` (captured with strace; the
  kernel here has no netem, so it refused them after they were sent);
* the scheduler: a fake clock that only moves when the scheduler waits;
* the controller: fakes standing in for the kernel calls, recording them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from testbed.errors import InputError, RunError
from testbed.events import controller as ev
from testbed.events.controller import EventController
from testbed.events.model import Action, check_events, expand_events, merged_spec, parse_events
from testbed.events.scheduler import Scheduler
from testbed.lab import linkops
from testbed.lab.linkops import netem_change_msg
from testbed.lab import procs
from testbed.lab.plan import LabPlan, compute_routes, make_plan
from testbed.profile import LinkProfile, resolve_link
from testbed.shaping import userspace
from testbed.topologies import build_topology

BLOCK = "10.77.0.0/16"
# `tc qdisc change dev tbn-p0 root handle 1: netem limit 1000 delay 15ms loss random 0.1%`
TC_CHANGE_HEX = (
    "4c0000002400050092e0066b00000000000000000300000000000100ffffffff000000000a000100"
    "6e6574656d0000001c00020087930300e803000037894100000000000000000000000000"
)
NLM_F_REQUEST_ACK = 0x0005


def _multicloud(links=None) -> LabPlan:
    topo = build_topology("multicloud", {"sites": ["cw", "gcp"], "hosts_per_site": 1,
                                         "paths": {"cw-gcp": "direct+transit"}, "transit_hops": 1})
    return make_plan(topo, "x", BLOCK, links or {})


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return _multicloud({"cw-gcp": {"rate": "200Mbit", "delay": "2ms"},
                        "cw-gcp-transit": {"rate": "100Mbit", "delay": "10ms"}})


def _field(raw) -> str:
    with pytest.raises(InputError) as info:
        parse_events(raw)
    return info.value.field


# ------------------------------------------------------------------ the model


def test_parse_events_all_actions():
    events = parse_events([
        {"at_s": 2, "link_down": "cw-gcp", "until_s": 4},
        {"at_s": 3, "failover": "cw-gcp", "label": "BFD fires"},
        {"at_s": 5, "set_profile": {"link": "cw-gcp", "profile": {"delay": "40ms"}}, "until_s": 7},
        {"at_s": 7.5, "failback": "cw-gcp"},
        {"at_s": 8, "link_up": "cw-gcp"},
        {"at_s": 9, "restore_profile": "cw-gcp"},
    ])
    assert [e.action for e in events] == ["link_down", "failover", "set_profile", "failback",
                                          "link_up", "restore_profile"]
    assert {e.link for e in events} == {"cw-gcp"}
    assert events[2].set_profile.profile == {"delay": "40ms"}
    assert parse_events(None) == []


@pytest.mark.parametrize("raw, field", [
    ([{"at_s": -1, "link_down": "a"}], "events.0.at_s"),
    ([{"at_s": "soon", "link_down": "a"}], "events.0.at_s"),
    ([{"at_s": float("nan"), "link_down": "a"}], "events.0.at_s"),
    ([{"link_down": "a"}], "events.0.at_s"),
    ([{"at_s": 1, "link_down": "a"}, {"at_s": 1}], "events.1"),
    ([{"at_s": 1, "link_down": "a", "failover": "a"}], "events.0"),
    ([{"at_s": 1, "link_up": "a", "until_s": 2}], "events.0.until_s"),
    ([{"at_s": 3, "link_down": "a", "until_s": 2}], "events.0.until_s"),
    ([{"at_s": 1, "link_down": "a b"}], "events.0.link_down"),
    ([{"at_s": 1, "link_down": "a", "colour": "red"}], "events.0.colour"),
    ([{"at_s": 1, "set_profile": {"link": "a"}}], "events.0.set_profile.profile"),
    ([{"at_s": 1, "set_profile": {"link": "a/b", "profile": {}}}], "events.0.set_profile.link"),
    ([{"at_s": 1, "set_profile": {"link": "a", "profile": {}, "x": 1}}], "events.0.set_profile.x"),
    ([7], "events.0"),
    ("link_down", "events"),
])
def test_parse_errors_name_the_dotted_field(raw, field):
    assert _field(raw) == field


def test_exactly_one_action_message_lists_them():
    with pytest.raises(InputError) as info:
        parse_events([{"at_s": 1, "link_down": "a", "failover": "a"}])
    assert "exactly one action" in info.value.message and "got link_down, failover" in info.value.message


def test_expand_adds_undo_and_orders_by_time():
    events = parse_events([
        {"at_s": 5, "set_profile": {"link": "l", "profile": {"delay": "9ms"}}, "until_s": 7},
        {"at_s": 2, "link_down": "l", "until_s": 4},
        {"at_s": 4, "failover": "l", "until_s": 6},
        {"at_s": 7, "link_down": "l"},
    ])
    actions = expand_events(events)
    assert [(a.at_s, a.kind, a.event) for a in actions] == [
        (2, "link_down", 1), (4, "link_up", 1), (4, "failover", 2), (5, "set_profile", 0),
        (6, "failback", 2), (7, "restore_profile", 0), (7, "link_down", 3)]
    assert actions[3].profile == {"delay": "9ms"}
    assert actions[1].label == "link_up l"


# ------------------------------------------------------------------ validation against a plan


def test_unknown_link_is_refused_with_the_known_ones(plan):
    with pytest.raises(InputError) as info:
        check_events(parse_events([{"at_s": 1, "link_down": "cw-aws"}]), plan)
    assert info.value.field == "events.0.link_down"
    assert "cw-gcp, cw-gcp-transit, fabric-cw, fabric-gcp" in info.value.message
    with pytest.raises(InputError) as info:
        check_events(parse_events([{"at_s": 0, "link_up": "cw-gcp"},
                                   {"at_s": 1, "set_profile": {"link": "nope", "profile": {}}}]), plan)
    assert info.value.field == "events.1.set_profile.link"


def test_times_must_fall_inside_the_step(plan):
    with pytest.raises(InputError) as info:
        check_events(parse_events([{"at_s": 8, "link_down": "cw-gcp"}]), plan, duration_s=8)
    assert info.value.field == "events.0.at_s"
    with pytest.raises(InputError) as info:
        check_events(parse_events([{"at_s": 2, "link_down": "cw-gcp", "until_s": 9}]), plan,
                     duration_s=8)
    assert info.value.field == "events.0.until_s"
    check_events(parse_events([{"at_s": 2, "link_down": "cw-gcp", "until_s": 8}]), plan, duration_s=8)


@pytest.mark.parametrize("profile, field, words", [
    ({"mtu": 1500}, "events.0.set_profile.profile", "mtu of link cw-gcp cannot change"),
    ({"queue": "100pkt"}, "events.0.set_profile.profile", "queue of link cw-gcp"),
    ({"corrupt": "1%"}, "events.0.set_profile.profile", "corrupt of link cw-gcp"),
    ({"rate": None}, "events.0.set_profile.profile", "cannot be removed"),
    ({"delay": "fast"}, "events.0.set_profile.profile.delay", "invalid time"),
    ({"bogus": 1}, "events.0.set_profile.profile.bogus", "unknown field"),
    ({"forward": "slow"}, "events.0.set_profile.profile.forward", "mapping"),
])
def test_set_profile_refusals(plan, profile, field, words):
    with pytest.raises(InputError) as info:
        check_events(parse_events([{"at_s": 1, "set_profile": {"link": "cw-gcp", "profile": profile}}]),
                     plan, "userspace")
    assert info.value.field == field
    assert words in info.value.message


def test_set_profile_needs_a_delay_line_or_netem_qdisc_to_change():
    plan = _multicloud({"cw-gcp": {"rate": "200Mbit", "delay": None, "jitter": None}})
    raw = [{"at_s": 1, "set_profile": {"link": "cw-gcp", "profile": {"delay": "30ms"}}}]
    with pytest.raises(InputError) as info:
        check_events(parse_events(raw), plan, "userspace")
    assert "no delay line" in info.value.message and "small delay" in info.value.message
    with pytest.raises(InputError) as info:
        check_events(parse_events(raw), plan, "netem")
    assert "no netem qdisc" in info.value.message
    # the rate alone can change: htb is there
    check_events(parse_events([{"at_s": 1, "set_profile": {"link": "cw-gcp",
                                                           "profile": {"rate": "50Mbit"}}}]), plan)


def test_unshaped_link_has_no_rate_to_change(plan):
    with pytest.raises(InputError) as info:
        check_events(parse_events([{"at_s": 1, "set_profile": {"link": "fabric-cw",
                                                               "profile": {"rate": "1Gbit"}}}]), plan)
    assert "no rate limit to change" in info.value.message


def test_failover_that_moves_no_route_is_refused(plan):
    with pytest.raises(InputError) as info:
        check_events(parse_events([{"at_s": 1, "failover": "fabric-cw"}]), plan)
    assert info.value.field == "events.0.failover"
    assert "moves no route" in info.value.message
    check_events(parse_events([{"at_s": 1, "failover": "cw-gcp"}]), plan)


def test_merged_spec_lays_fields_over_the_configured_profile(plan):
    direct = next(l for l in plan.links if l.name == "cw-gcp")
    spec = merged_spec(direct.spec, {"delay": "40ms", "jitter": "5ms", "loss": "1%"}, "f")
    assert spec.forward.rate_bps == 200_000_000 and spec.forward.delay_ms == 40
    assert spec.forward.jitter_ms == 5 and spec.reverse.loss_pct == 1
    assert spec.forward.mtu == direct.spec.forward.mtu
    one_way = merged_spec(direct.spec, {"forward": {"delay": "10ms"}}, "f")
    assert one_way.forward.delay_ms == 10 and one_way.reverse.delay_ms == 2
    preset = merged_spec(direct.spec, {"preset": "internet-transit"}, "f")
    assert preset == resolve_link("internet-transit", "x")


# ------------------------------------------------------------------ routes with a link cut


def _addr(cidr: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Interface(cidr).ip


def _walk(plan: LabPlan, routes: Dict[str, list], src: str, dst: str) -> List[str]:
    """Nodes a packet visits following ``routes`` (the oracle; no code under test)."""
    owners = {_addr(i.address): n.name for n in plan.nodes.values() for i in n.intfs if i.address}
    target = _addr(next(i.address for i in plan.nodes[dst].intfs if i.address))
    path, current = [src], src
    for _ in range(16):
        node = plan.nodes[current]
        if any(i.address and _addr(i.address) == target for i in node.intfs):
            return path
        nets = [ipaddress.IPv4Interface(i.address).network for i in node.intfs if i.address]
        if any(target in net for net in nets):
            hop = target
        else:
            matches = [(ipaddress.IPv4Network(s), ipaddress.IPv4Address(v))
                       for s, v in routes[current] if target in ipaddress.IPv4Network(s)]
            assert matches, f"{current} has no route to {dst}"
            hop = max(matches, key=lambda m: m[0].prefixlen)[1]
            assert any(hop in net for net in nets), f"{current}: {hop} not on-link"
        current = owners[hop]
        path.append(current)
    raise AssertionError(f"loop: {path}")


def test_compute_routes_without_cuts_is_the_plan(plan):
    routes = compute_routes(plan)
    for name, node in plan.nodes.items():
        if node.role != "switch":
            assert routes[name] == node.routes
    assert _walk(plan, routes, "cw-h1", "gcp-h1") == ["cw-h1", "cw-r", "gcp-r", "gcp-h1"]


def test_failover_routes_avoid_the_cut_link_both_ways(plan):
    direct = {l.id for l in plan.links if l.name == "cw-gcp"}
    routes = compute_routes(plan, direct)
    assert _walk(plan, routes, "cw-h1", "gcp-h1") == ["cw-h1", "cw-r", "t1-1", "gcp-r", "gcp-h1"]
    assert _walk(plan, routes, "gcp-h1", "cw-h1") == ["gcp-h1", "gcp-r", "t1-1", "cw-r", "cw-h1"]
    before = compute_routes(plan)
    changed = {n for n in routes if dict(routes[n]) != dict(before[n])}
    # only the two edge routers move; hosts keep their default-like routes
    assert {n for n in changed if dict(before[n]).items() - dict(routes[n]).items()} == {"cw-r", "gcp-r"}
    assert plan.nodes["cw-r"].routes == before["cw-r"]  # the plan itself is untouched


def test_cutting_a_switch_port_splits_its_segment(plan):
    fabric = next(l for l in plan.links if l.name == "fabric-cw" and "cw-h1" in (l.a, l.b))
    routes = compute_routes(plan, {fabric.id})
    cw_subnet = next(i.address for i in plan.nodes["cw-h1"].intfs)
    net = str(ipaddress.IPv4Interface(cw_subnet).network)
    # cw-h1 lost its router: no route from it to anywhere
    assert routes["cw-h1"] == []
    assert dict(routes["gcp-r"])[net]  # still routed towards cw-r, which is attached


def test_compute_routes_refuses_unknown_link_id(plan):
    with pytest.raises(InputError):
        compute_routes(plan, {99})


def test_plan_round_trips_through_its_dict(plan):
    again = LabPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.to_dict() == plan.to_dict()
    assert compute_routes(again, {2}) == compute_routes(plan, {2})


# ------------------------------------------------------------------ the scheduler


class FakeClock:
    """Time moves only when the scheduler waits (or an action takes time)."""

    def __init__(self):
        self.now = 100.0
        self.waits = []

    def __call__(self) -> float:
        return self.now

    def wait(self, timeout_s: float) -> bool:
        self.waits.append(timeout_s)
        self.now += timeout_s
        return False


def test_scheduler_fires_each_action_at_its_time_and_records_it():
    clock = FakeClock()
    fired = []

    def apply(action):
        fired.append((action.kind, clock.now - 100.0))
        clock.now += 0.01  # applying takes 10 ms
        return {"links": [2]}

    actions = expand_events(parse_events([{"at_s": 2, "link_down": "l", "until_s": 4},
                                          {"at_s": 3, "failover": "l"}]))
    sched = Scheduler(actions, apply, clock=clock, wait=clock.wait)
    sched.run(100.0)
    assert [k for k, _ in fired] == ["link_down", "failover", "link_up"]
    assert [round(t, 6) for _, t in fired] == [2.0, 3.0, 4.0]
    assert max(clock.waits) <= Scheduler.MAX_WAIT_S + 1e-12
    rec = sched.records[0]
    assert rec["planned_s"] == 2 and rec["actual_s"] == pytest.approx(2.0)
    assert rec["applied_s"] == pytest.approx(0.01) and rec["links"] == [2]
    assert sched.done and sched.error is None


def test_scheduler_late_action_fires_at_once_with_its_real_time():
    clock = FakeClock()
    clock.now = 103.5  # the step started late
    sched = Scheduler(expand_events(parse_events([{"at_s": 2, "link_down": "l"}])),
                      lambda a: {}, clock=clock, wait=clock.wait)
    sched.run(100.0)
    assert sched.records[0]["actual_s"] == pytest.approx(3.5) and clock.waits == []


def test_scheduler_stops_on_a_failing_action():
    clock = FakeClock()

    def apply(action):
        if action.kind == "failover":
            raise RunError("netlink said no")
        return {}

    actions = expand_events(parse_events([{"at_s": 1, "link_down": "l"}, {"at_s": 2, "failover": "l"},
                                          {"at_s": 3, "link_up": "l"}]))
    sched = Scheduler(actions, apply, clock=clock, wait=clock.wait)
    sched.run(100.0)
    assert [r["kind"] for r in sched.records] == ["link_down", "failover"]
    assert sched.records[1]["error"] == "netlink said no"
    assert isinstance(sched.error, RunError) and sched.done


def test_scheduler_stop_fires_nothing_more():
    clock = FakeClock()
    sched = Scheduler(expand_events(parse_events([{"at_s": 5, "link_down": "l"}])), lambda a: {},
                      clock=clock, wait=lambda s: True)
    sched.run(100.0)
    assert sched.records == []


def test_scheduler_thread_with_the_real_clock():
    sched = Scheduler(expand_events(parse_events([{"at_s": 0.05, "link_down": "l"}])), lambda a: {})
    t0 = time.monotonic()
    sched.start(t0)
    deadline = t0 + 5
    while not sched.done and time.monotonic() < deadline:
        time.sleep(0.01)
    sched.stop()
    assert 0.05 <= sched.records[0]["actual_s"] < 1.0


# ------------------------------------------------------------------ netem change message


def test_netem_change_message_is_tc_qdisc_change():
    msg, flags = netem_change_msg(3, None, 0x10000, LinkProfile(delay_ms=15, loss_pct=0.1), 1000)
    assert flags == NLM_F_REQUEST_ACK  # no NLM_F_CREATE / NLM_F_EXCL: change, not add
    msg["header"]["type"] = 36  # RTM_NEWQDISC
    msg["header"]["flags"] = flags
    msg.encode()
    ours = bytes(msg.data)
    tc = bytes.fromhex(TC_CHANGE_HEX)
    assert struct.unpack_from("<HH", ours, 4) == struct.unpack_from("<HH", tc, 4) == (36, flags)
    # the tcmsg header and the tc_netem_qopt (delay, limit, loss ...) are tc's, byte for byte
    assert ours[16:36] == tc[16:36]
    qopt_at = tc.index(bytes.fromhex("1c000200")) + 4
    assert ours[qopt_at:qopt_at + 24] == tc[qopt_at:qopt_at + 24]


class FakeNetlink:
    """An IPRoute stand-in: records tc calls and netem requests."""

    def __init__(self, indexes):
        self.indexes = indexes
        self.calls = []
        self.status = {}

    def link_lookup(self, ifname):
        return [self.indexes[ifname]] if ifname in self.indexes else []

    def _get(self, ifname):  # RTM_GETLINK by name, as testbed.lab.nssocket.ifindex asks
        from pyroute2.netlink.exceptions import NetlinkError

        if ifname not in self.indexes:
            raise NetlinkError(19, "No such device")
        return [{"index": self.indexes[ifname]}]

    def tc(self, *args, **kwargs):
        self.calls.append(("tc", args, kwargs))

    def nlm_request(self, msg, msg_type, msg_flags):
        self.calls.append(("netem", msg_type, msg_flags, msg))
        return ()

    def link(self, *args, **kwargs):
        if args == ("get",):
            return self._get(kwargs["ifname"])
        self.calls.append(("link", args, kwargs))

    def route(self, *args, **kwargs):
        self.calls.append(("route", args, kwargs))


# ------------------------------------------------------------------ the controller


class FakeLab:
    def __init__(self, plan: LabPlan, backend="userspace", scale=1.0):
        self.name = plan.lab
        self.doc = {"plan": plan.to_dict()}
        self.backend = backend
        self.scale = scale

    def proc_records(self):
        return [procs.ProcRecord(pid=1, start=1, netns=l["wire"], kind="delayline",
                                 stats=f"/nonexistent/delayline-_w{l['id']}.stats.json")
                for l in self.doc["plan"]["links"] if l["wire"]]


@pytest.fixture
def kernel(monkeypatch):
    """Every kernel call of testbed.events recorded instead of made."""
    calls = {"state": [], "master": [], "routes": [], "ns": [], "lines": []}
    sockets = {}

    def fake_open_ns(name):
        class _Ctx:
            def __enter__(self_inner):
                sock = sockets.setdefault(name, FakeNetlink({"port-a": 2, "port-b": 3}))
                calls["ns"].append(name)
                return sock

            def __exit__(self_inner, *exc):
                return False
        return _Ctx()

    monkeypatch.setattr(ev, "open_ns", fake_open_ns)
    monkeypatch.setattr(linkops, "set_state", lambda netns, ifs, state: calls["state"].append((netns, tuple(ifs), state)))
    monkeypatch.setattr(linkops, "set_master", lambda netns, ifname, br: calls["master"].append((netns, ifname, br)))
    monkeypatch.setattr(linkops, "replace_routes", lambda netns, routes: calls["routes"].append((netns, dict(routes))))
    monkeypatch.setattr(ev, "reconfigure", lambda rec, docs, timeout_s=5.0: calls["lines"].append((rec.netns, docs)))
    monkeypatch.setattr(ev, "wait_ready", lambda plan, timeout_s=10.0: 0.0)
    monkeypatch.setattr(ev, "list_namespaces", lambda: [])
    calls["sockets"] = sockets
    return calls


def _act(kind, link, profile=None):
    return Action(0.0, kind, link, 0, profile)


def test_link_down_cuts_the_wire_bridge_and_restore_brings_it_back(plan, kernel):
    ctl = EventController(FakeLab(plan))
    detail = ctl.apply(_act("link_down", "cw-gcp-transit"))
    assert detail == {"links": [3, 6]}
    assert kernel["state"] == [("tb.x._w3", ("br0",), "down"), ("tb.x._w6", ("br0",), "down")]
    assert ctl.changed()
    ctl.restore()
    assert kernel["state"][2:] == [("tb.x._w3", ("br0",), "up"), ("tb.x._w6", ("br0",), "up")]
    assert not ctl.changed()


def test_unshaped_link_to_a_switch_leaves_the_bridge(plan, kernel):
    ctl = EventController(FakeLab(plan))
    ctl.apply(_act("link_down", "fabric-gcp"))
    assert kernel["master"] == [("tb.x.gcp-s", "gcp-s-eth0", None), ("tb.x.gcp-s", "gcp-s-eth1", None)]
    assert kernel["state"] == []  # the hosts and routers keep carrier and routes
    ctl.apply(_act("link_up", "fabric-gcp"))
    assert kernel["master"][2:] == [("tb.x.gcp-s", "gcp-s-eth0", "br0"), ("tb.x.gcp-s", "gcp-s-eth1", "br0")]


def test_unshaped_router_link_goes_down_at_both_ends_and_its_routes_come_back(kernel):
    plan = _multicloud({"cw-gcp": {"rate": None, "delay": None, "jitter": None}})
    direct = next(l for l in plan.links if l.name == "cw-gcp")
    assert direct.wire is None
    ctl = EventController(FakeLab(plan))
    ctl.apply(_act("link_down", "cw-gcp"))
    assert kernel["state"] == [("tb.x.cw-r", ("cw-r-eth1",), "down"),
                               ("tb.x.gcp-r", ("gcp-r-eth0",), "down")]
    ctl.apply(_act("failover", "cw-gcp"))
    assert {n for n, _ in kernel["routes"]} == {"tb.x.cw-r", "tb.x.gcp-r"}
    ctl.apply(_act("failback", "cw-gcp"))
    # the routes back over the direct link cannot go in while its ends are down
    assert len(kernel["routes"]) == 2
    ctl.apply(_act("link_up", "cw-gcp"))
    assert kernel["state"][2:] == [("tb.x.cw-r", ("cw-r-eth1",), "up"),
                                   ("tb.x.gcp-r", ("gcp-r-eth0",), "up")]
    assert kernel["routes"][2:] == [("tb.x.cw-r", dict(plan.nodes["cw-r"].routes)),
                                    ("tb.x.gcp-r", dict(plan.nodes["gcp-r"].routes))]
    assert not ctl.changed()


def test_failover_replaces_only_the_routes_that_move_and_failback_restores(plan, kernel):
    ctl = EventController(FakeLab(plan))
    detail = ctl.apply(_act("failover", "cw-gcp"))
    moved = {(c["node"], c["subnet"]): c["via"] for c in detail["routes_changed"]}
    assert {n for n, _ in moved} == {"cw-r", "gcp-r"}
    t1 = {_addr(i.address) for i in plan.nodes["t1-1"].intfs}
    assert all(ipaddress.IPv4Address(v) in t1 for v in moved.values())
    assert {netns for netns, _ in kernel["routes"]} == {"tb.x.cw-r", "tb.x.gcp-r"}
    ctl.apply(_act("failover", "cw-gcp"))  # again: nothing more to move
    assert len(kernel["routes"]) == 2
    back = ctl.apply(_act("failback", "cw-gcp"))
    assert {(c["node"], c["subnet"]): c["via"] for c in back["routes_changed"]} == {
        k: dict(plan.nodes[k[0]].routes)[k[1]] for k in moved}
    assert not ctl.changed()


def test_apply_event_applies_the_start_action_only(plan, kernel):
    (event,) = parse_events([{"at_s": 2, "link_down": "cw-gcp", "until_s": 4}])
    ctl = EventController(FakeLab(plan))
    assert ev.apply_event(ctl.lab, event, ctl) == {"links": [2]}
    assert kernel["state"] == [("tb.x._w2", ("br0",), "down")] and ctl.changed()
    ctl.restore()
    assert kernel["state"][-1] == ("tb.x._w2", ("br0",), "up")


def test_restore_undoes_a_failover_left_in_place(plan, kernel):
    ctl = EventController(FakeLab(plan))
    ctl.apply(_act("failover", "cw-gcp"))
    ctl.restore()
    assert ctl.routes == {n: dict(node.routes) for n, node in plan.nodes.items() if node.role != "switch"}
    assert len(kernel["routes"]) == 4  # two routers there, two back


def test_set_profile_userspace_changes_htb_and_reloads_the_line(plan, kernel):
    ctl = EventController(FakeLab(plan, scale=2.0))
    ctl.apply(_act("set_profile", "cw-gcp", {"rate": "50Mbit", "delay": "40ms", "loss": "1%"}))
    sock = kernel["sockets"]["tb.x._w2"]
    classes = [c for c in sock.calls if c[0] == "tc"]
    assert [(c[1][0], c[2]["index"], c[2]["rate"]) for c in classes] == [
        ("change-class", 3, "25000000bit"), ("change-class", 2, "25000000bit")]  # scale 2
    (netns, docs), = kernel["lines"]
    assert netns == "tb.x._w2" and set(docs) == {(2, "forward"), (2, "reverse")}
    assert docs[(2, "forward")]["delay_ms"] == 40 and docs[(2, "forward")]["loss_pct"] == 1
    ctl.restore()
    assert [c[2]["rate"] for c in sock.calls if c[0] == "tc"][2:] == ["100000000bit"] * 2
    assert kernel["lines"][1][1][(2, "forward")]["delay_ms"] == 2
    assert not ctl.changed()


def test_set_profile_netem_sends_a_change_to_the_leaf(plan, kernel):
    ctl = EventController(FakeLab(plan, backend="netem"))
    ctl.apply(_act("set_profile", "cw-gcp", {"delay": "40ms"}))
    requests = [c for c in kernel["sockets"]["tb.x._w2"].calls if c[0] == "netem"]
    assert [(r[1], r[2]) for r in requests] == [(36, NLM_F_REQUEST_ACK)] * 2
    msg = requests[0][3]
    assert (msg["index"], msg["parent"], msg["handle"]) == (3, 0x10001, 0x100000)  # leaf 10: of 1:1
    assert kernel["lines"] == []


def test_restore_reports_failures_but_tries_everything(plan, kernel, monkeypatch):
    ctl = EventController(FakeLab(plan))
    ctl.apply(_act("link_down", "cw-gcp"))
    ctl.apply(_act("failover", "cw-gcp"))

    def broken(netns, ifs, state):
        raise RunError("bridge gone")
    monkeypatch.setattr(linkops, "set_state", broken)
    monkeypatch.setattr(ev, "list_namespaces", lambda: [n.netns for n in plan.nodes.values()])
    with pytest.raises(RunError) as info:
        ctl.restore()
    assert "bridge gone" in str(info.value)
    assert len(kernel["routes"]) == 4  # the routes were put back all the same


def test_restore_of_a_destroyed_lab_is_quiet(plan, kernel, monkeypatch):
    ctl = EventController(FakeLab(plan))
    ctl.apply(_act("link_down", "cw-gcp"))
    monkeypatch.setattr(linkops, "set_state", lambda *a: (_ for _ in ()).throw(RunError("no ns")))
    assert ctl.restore() == ["link cw-gcp up: no ns"]  # namespaces gone: not raised


# ------------------------------------------------------------------ the delay line's reload


from testbed.delayline.reload import changed_queues, reload_seed  # noqa: E402


def _queue(num, delay_ms=2.0, **prof):
    return {"queue_num": num, "link": "l", "link_id": 2, "direction": "forward", "node": "_w2",
            "ifname": "port-a", "max_len": 1024, "seed": 7 + num,
            "profile": {"delay_ms": delay_ms, "jitter_ms": 0.0, "loss_pct": 0.0, **prof}}


def test_changed_queues_picks_the_changed_profile_and_reseeds():
    current = [_queue(1), _queue(2)]
    new = {"generation": 3, "queues": [_queue(1), _queue(2, delay_ms=40.0, loss_pct=1.0)]}
    changed, errors = changed_queues(current, new)
    assert errors == [] and list(changed) == [1]
    assert changed[1]["profile"]["delay_ms"] == 40 and changed[1]["seed"] == reload_seed(9, 3)
    assert reload_seed(9, 0) == 9 and reload_seed(None, 2) is None and reload_seed(9, 1) != 9


def test_changed_queues_refuses_copy_mode_and_queue_set_changes():
    changed, errors = changed_queues([_queue(1)], {"queues": [_queue(1, corrupt_pct=1.0)]})
    assert changed == {} and "corrupt_pct cannot change" in errors[0]
    _, errors = changed_queues([_queue(1)], {"queues": [_queue(1), _queue(2)]})
    assert "differ" in errors[0]


def _line_config(tmp_path, queues):
    cfg = {"lab": "x", "node": "_w2", "stats_path": str(tmp_path / "line.stats.json"),
           "queues": queues}
    path = tmp_path / "line.json"
    path.write_text(json.dumps(cfg))
    return cfg, path


def test_python_line_reload_gives_new_models(tmp_path):
    pytest.importorskip("netfilterqueue")
    from testbed.delayline.line import DelayLine

    cfg, path = _line_config(tmp_path, [_queue(1), _queue(2)])
    line = DelayLine(cfg, str(path))
    before = line.queues[1].delay
    path.write_text(json.dumps({**cfg, "generation": 1,
                                "queues": [_queue(1), _queue(2, delay_ms=40.0, jitter_ms=5.0)]}))
    line.reload()
    assert line.queues[1].delay is not before and line.queues[1].delay.delay_ms == 40
    assert line.queues[1].delay.jitter_ms == 5 and line.queues[0].delay.delay_ms == 2
    stats = json.loads(Path(cfg["stats_path"]).read_text())
    assert (stats["generation"], stats["reloads"], stats["errors"]) == (1, 1, [])


def test_python_line_reload_keeps_running_on_a_bad_file(tmp_path):
    pytest.importorskip("netfilterqueue")
    from testbed.delayline.line import DelayLine

    cfg, path = _line_config(tmp_path, [_queue(1)])
    line = DelayLine(cfg, str(path))
    path.write_text("{not json")
    line.reload()
    assert line.generation == 0 and line.errors[-1].startswith("reload:")


def test_c_line_reload_switches_mode_and_empties_the_feed(tmp_path):
    pytest.importorskip("testbed.delayline._fastline", reason="C engine not built")
    from testbed.delayline import fast

    cfg, path = _line_config(tmp_path, [_queue(1), _queue(2, jitter_ms=1.0), _queue(3, jitter_ms=1.0)])
    line = fast.FastDelayLine(cfg, str(path))
    assert line.settings[0]["const_mode"] == 1 and set(line.feeders) == {1, 2}
    line._feed_once()
    assert line.engine.feed_level(2)[0] == fast.FEED_SIZE
    line._feed_thread = threading.Thread(target=lambda: None)  # no feed thread in this test
    path.write_text(json.dumps({**cfg, "generation": 2, "queues": [
        _queue(1, delay_ms=40.0, jitter_ms=5.0, loss_pct=1.0), _queue(2, delay_ms=3.0),
        _queue(3, jitter_ms=2.0)]}))
    line.reload()
    assert line.settings[0]["const_mode"] == 0 and line.settings[0]["gso"] == 0  # loss: no GSO
    assert line.settings[1]["const_mode"] == 1 and line.settings[1]["delay_ns"] == 3_000_000
    assert set(line.feeders) == {0, 2}
    # the old draws are gone: one fresh chunk each now, the feed thread does the rest
    assert line.engine.feed_level(0) == (fast.FEED_CHUNK, fast.FEED_SIZE)
    assert line.engine.feed_level(1)[1] == 0
    assert line.engine.feed_level(2) == (fast.FEED_CHUNK, fast.FEED_SIZE)
    assert json.loads(Path(cfg["stats_path"]).read_text())["generation"] == 2


def test_c_engine_reconfigure_refuses_copy_mode_change():
    _fastline = pytest.importorskip("testbed.delayline._fastline", reason="C engine not built")
    eng = _fastline.Engine([{"queue_num": 1, "const_mode": 1, "delay_ns": 5}], feed_size=1024)
    with pytest.raises(ValueError):
        eng.reconfigure(0, {"copy_payload": 1})
    with pytest.raises(ValueError):
        eng.reconfigure(3, {})
    eng.reconfigure(0, {"const_mode": 0, "delay_ns": 7})
    assert eng.feed_level(0) == (0, 1024)  # a constant queue got a ring too


# ------------------------------------------------------------------ the reload protocol


FAKE_LINE = r"""
import json, os, signal, sys, time
cfg_path, stats_path, mode = sys.argv[1:4]
state = {"generation": 0, "errors": [], "hup": False}
def write():
    with open(stats_path + ".tmp", "w") as fh:
        json.dump({"ready": True, "generation": state["generation"], "errors": state["errors"]}, fh)
    os.replace(stats_path + ".tmp", stats_path)
signal.signal(signal.SIGHUP, lambda *a: state.update(hup=True))
write()
while True:
    time.sleep(0.005)
    if state["hup"]:
        state["hup"] = False
        if mode == "die":
            sys.exit(3)
        if mode == "ignore":
            continue
        cfg = json.load(open(cfg_path))
        if mode == "refuse":
            state["errors"].append("reload: queue 1: corrupt_pct cannot change while the line runs")
        state["generation"] = cfg["generation"]
        write()
"""


def _fake_line(tmp_path, mode):
    cfg_path = tmp_path / "delayline-_w2.json"
    stats_path = tmp_path / "delayline-_w2.stats.json"
    cfg_path.write_text(json.dumps({"queues": [{"queue_num": 1, "link_id": 2, "direction": "forward",
                                                "profile": {"delay_ms": 2.0}}]}))
    proc = subprocess.Popen([sys.executable, "-c", FAKE_LINE, str(cfg_path), str(stats_path), mode])
    deadline = time.monotonic() + 10
    while not stats_path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    rec = procs.ProcRecord(pid=proc.pid, start=procs.start_time(proc.pid), netns="tb.x._w2",
                           kind="delayline", stats=str(stats_path))
    return proc, rec, cfg_path


@pytest.mark.parametrize("mode", ["ok", "refuse", "ignore", "die"])
def test_reconfigure_protocol(tmp_path, mode):
    proc, rec, cfg_path = _fake_line(tmp_path, mode)
    try:
        if mode == "ok":
            assert userspace.reconfigure(rec, {(2, "forward"): {"delay_ms": 40.0}}) == 1
            cfg = json.loads(cfg_path.read_text())
            assert cfg["generation"] == 1 and cfg["queues"][0]["profile"] == {"delay_ms": 40.0}
            assert userspace.reconfigure(rec, {(2, "forward"): {"delay_ms": 2.0}}) == 2
        elif mode == "refuse":
            with pytest.raises(RunError, match="corrupt_pct cannot change"):
                userspace.reconfigure(rec, {(2, "forward"): {"delay_ms": 40.0}})
        elif mode == "ignore":
            with pytest.raises(RunError, match="did not take generation 1"):
                userspace.reconfigure(rec, {(2, "forward"): {"delay_ms": 40.0}}, timeout_s=0.3)
        else:
            with pytest.raises(RunError, match="died on reload|is gone"):
                userspace.reconfigure(rec, {(2, "forward"): {"delay_ms": 40.0}})
        with pytest.raises(RunError, match="no queue for link 5"):
            userspace.reconfigure(rec, {(5, "forward"): {}})
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)


def test_reconfigure_refuses_a_line_that_cannot_reload(tmp_path):
    stats = tmp_path / "delayline-_w2.stats.json"
    stats.write_text(json.dumps({"ready": True}))  # an older line: no generation
    (tmp_path / "delayline-_w2.json").write_text(json.dumps({"queues": [
        {"queue_num": 1, "link_id": 2, "direction": "forward", "profile": {}}]}))
    rec = procs.ProcRecord(pid=os.getpid(), start=procs.start_time(os.getpid()), netns="n",
                           kind="delayline", stats=str(stats))
    with pytest.raises(RunError, match="recreate the lab"):
        userspace.reconfigure(rec, {(2, "forward"): {}})
