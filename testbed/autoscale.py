"""``scale: auto``: the smallest K that keeps the emulated load inside this machine's capacity.

Before a lab is built, the peak concurrent load each step puts on the delay
lines is worked out. For a collective-like step, :func:`estimate_load`: every
inter-host edge the algorithm uses at once (consecutive hosts of the
topology-aware ring, and back; all pairs for alltoall) sends at what its path
carries -- the smaller of the bottleneck rate and the TCP bound of its
connections (:func:`testbed.tcpmodel.tcp_bound`) -- and every link direction
with an impairment (a delay line) on its path carries that. For a ``tcp`` or
``udp`` step between the endpoints, :func:`flow_load`: the line directions
of the data's path carry the flow's rate (the TCP bound, or the UDP bitrate).
The load is the number of such line directions in use and the bits per
second through them all. Steps run one after another, so a variant's K is
the largest any of its steps needs.

:func:`choose_scale` compares a load with what this machine carried through
as many concurrent lines (:func:`testbed.capacity.lines_capacity_bps`,
measured by ``testbed doctor --bench`` and cached) and picks the smallest K
of :data:`CANDIDATES` with ``load / K <= MARGIN x capacity``.

Never automatically scaled (K = 1 with the reason), because scaling changes
what is measured:

* a ``timeline`` step (throughput and RTT over time through events);
* a ``tcp`` step whose rate is set by TCP's window or loss bound rather than
  the link (a window and a loss rate are not scaled: the lab would carry K
  times more than the real link would);
* a collective with an edge whose rate TCP's window sets (window / RTT
  below the link: the window is not scaled, so the scaled lab would move
  the bytes K times faster than the real link);
* a collective whose edges cross a lossy path, whatever the congestion
  control: loss is counted in packets, and a scaled lab sends K times fewer
  packets per message, so K times fewer messages lose one and wait a round
  trip or two for its recovery (measured, two-clouds over transit, 16 ranks,
  BBR, 4 MiB: 2.5x the model at K = 8; and a loss-based TCP's rate does not
  scale with the link's at all);
* ``ping`` and ``owd`` probes where the K would change what they measure: a
  link K times slower takes K times longer to serialise each probe. Scaling
  is allowed when that extra time over the probe's path stays within
  :data:`PROBE_SERIALISATION_SHARE` of the path's configured one-way delay
  (on the flagship's 10 Gbit/s direct path at K = 5, 0.3 us per 84-byte ping
  against 1 ms).

An explicit ``scale: K`` (1 included) is used as given; :func:`explicit`
records whether it was enough, which a row's verdict reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from testbed import tcpmodel
from testbed.errors import InputError
from testbed.lab.paths import l3_path, link_profile, path_links, path_profile

__all__ = ["CANDIDATES", "MARGIN", "AUTO", "PROBE_SERIALISATION_SHARE", "Load", "Decision", "Flow",
           "Probe", "estimate_load", "flow_load", "probe_extra_ms", "choose_scale", "explicit",
           "physics_reason", "plan_for", "decide", "for_variant"]

AUTO = "auto"
#: the K auto picks from (1 = no scaling)
CANDIDATES: Tuple[int, ...] = (1, 2, 3, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 200, 500, 1000)
#: the share of the measured capacity a run may use. The capacity is saturating TCP through
#: unshaped lines in packets of one MTU (lines 30-160 ms late), which is what hosts send on
#: a scaled lab; a faithful line must stay within 1 ms. Measured here (2 cores, issue 13):
#: 16 lines carried 7.1 Gbit/s of 9000-byte packets saturated; a star ring allreduce
#: (8 hosts, 1 Gbit/s, 5 ms) through them ran its lines 0.84-0.88 ms late (p99) at
#: 1.0 Gbit/s (K 16, 0.14 of it) and 1.7 ms late at 2.0 (K 8, 0.28).
MARGIN = 0.12
#: step kinds whose figures scaling would change, whatever the K
NEVER_SCALED_STEPS = {"timeline": "throughput and RTT over time through events"}
#: probe steps: scaled only where K's extra serialisation time is negligible
PROBE_STEPS = {"ping": "RTT probes", "owd": "one-way delay and jitter probes"}
#: the share of a path's one-way delay a probe's extra serialisation time may take
PROBE_SERIALISATION_SHARE = 0.01
#: bytes of headers a probe carries beyond its payload (IPv4 20 + ICMP or UDP 8)
PROBE_HEADER_BYTES = 28


@dataclass
class Load:
    """Peak concurrent emulated load: line directions in use and the bits/s through them."""

    lines: int
    total_bps: float
    max_line_bps: float
    loss_limited: List[str] = field(default_factory=list)  # "a->b" edges over a lossy path
    window_limited: List[str] = field(default_factory=list)  # "a->b" edges TCP's window binds

    def to_dict(self) -> dict:
        return {"lines": self.lines, "total_bps": round(self.total_bps),
                "max_line_bps": round(self.max_line_bps), "loss_limited": list(self.loss_limited),
                "window_limited": list(self.window_limited)}


@dataclass(frozen=True)
class Flow:
    """A ``tcp`` or ``udp`` step's traffic between the variant's endpoints."""

    kind: str  # "tcp" | "udp"
    src: str
    dst: str
    connections: int = 1
    bitrate_bps: Optional[float] = None  # udp: the offered rate
    window_bytes: Optional[int] = None  # tcp: iperf3's socket buffer, when set
    cc: Optional[str] = None


@dataclass(frozen=True)
class Probe:
    """A ``ping`` or ``owd`` step's probes: one packet of ``size_bytes`` payload at a time."""

    kind: str  # "ping" | "owd"
    src: str
    dst: str
    size_bytes: int


@dataclass
class Decision:
    """The K a run uses, and why."""

    scale: float
    mode: str  # "auto" | "explicit"
    reason: str
    load: Optional[Load] = None
    capacity_bps: Optional[float] = None
    enough: Optional[bool] = None  # explicit K: did it keep the load inside the margin?

    def to_dict(self) -> dict:
        return {"scale": self.scale, "mode": self.mode, "reason": self.reason,
                "load": self.load.to_dict() if self.load else None,
                "capacity_bps": None if self.capacity_bps is None else round(self.capacity_bps),
                "margin": MARGIN, "enough": self.enough}


def _ring_hosts(plan) -> List[str]:
    """Hosts in name order, each site's contiguous (the topology-aware ring over hosts)."""
    hosts = sorted(n.name for n in plan.hosts())
    sites: List[Optional[str]] = []
    for h in hosts:
        if plan.nodes[h].site not in sites:
            sites.append(plan.nodes[h].site)
    return sorted(hosts, key=lambda h: sites.index(plan.nodes[h].site))


def _edges(plan, op: str, hosts: Optional[Sequence[str]] = None) -> List[Tuple[str, str]]:
    hosts = list(hosts) if hosts else _ring_hosts(plan)
    if len(hosts) < 2:
        return []
    if op == "alltoall":
        return [(a, b) for a in hosts for b in hosts if a != b]
    ring = [(hosts[i], hosts[(i + 1) % len(hosts)]) for i in range(len(hosts))]
    back = [(b, a) for a, b in ring]  # allreduce and its kin use both directions of the ring's links
    return list(dict.fromkeys(ring + (back if len(hosts) > 2 else [])))


def estimate_load(plan, op: str = "allreduce", nsocks: int = 1,
                  buffsize_bytes: Optional[int] = 4 * 1024 * 1024,
                  host: tcpmodel.HostTcp = tcpmodel.HostTcp(),
                  hosts: Optional[Sequence[str]] = None) -> Load:
    """The peak concurrent load of a collective of ``op`` over the plan's hosts (module docstring)."""
    per_line: Dict[Tuple[int, str], float] = {}
    loss_limited, window_limited = [], []
    for a, b in _edges(plan, op, hosts):
        l3 = l3_path(plan, a, b)
        hops = path_links(plan, l3)
        pred = path_profile(plan, l3)
        try:
            bound = tcpmodel.tcp_bound(pred["bottleneck_bps"], pred["rtt_ms"], pred["loss_pct"],
                                       pred["path_mtu"], host, nsocks, buffsize_bytes)
            rate = bound.rate_bps
            if pred["loss_pct"] > 0:  # loss-bound (cubic) or not (BBR): per packet all the same
                loss_limited.append(f"{a}->{b}")
            elif bound.limit == "window":
                window_limited.append(f"{a}->{b}")
        except InputError:  # unshaped, no delay: no line on it either
            continue
        for link, direction in hops:
            prof = link_profile(link, direction)
            if not prof.has_impairment:
                continue
            key = (link.id, direction)
            cap = prof.rate_bps or rate
            per_line[key] = min(cap, per_line.get(key, 0.0) + rate)
    total = sum(per_line.values())
    return Load(len(per_line), total, max(per_line.values(), default=0.0), loss_limited, window_limited)


def flow_load(plan, flow: Flow, host: tcpmodel.HostTcp = tcpmodel.HostTcp()) -> Tuple[Load, Optional[str]]:
    """The load of one tcp or udp step, and the TCP bound's limit when it is not the link."""
    l3 = l3_path(plan, flow.src, flow.dst)
    pred = path_profile(plan, l3)
    limit = None
    if flow.kind == "tcp":
        if flow.cc:
            host = dataclasses.replace(host, congestion=flow.cc)
        try:
            bound = tcpmodel.tcp_bound(pred["bottleneck_bps"], pred["rtt_ms"], pred["loss_pct"],
                                       pred["path_mtu"], host, flow.connections, flow.window_bytes)
        except InputError:  # unshaped and no delay: no line on it either
            return Load(0, 0.0, 0.0), None
        rate = bound.rate_bps
        limit = None if bound.limit == "link" else bound.limit
    else:
        rate = min(x for x in (flow.bitrate_bps, pred["bottleneck_bps"]) if x) if (
            flow.bitrate_bps or pred["bottleneck_bps"]) else 0.0
    per_line = {}
    for link, direction in path_links(plan, l3):
        prof = link_profile(link, direction)
        if prof.has_impairment:
            per_line[(link.id, direction)] = min(prof.rate_bps or rate, rate)
    total = sum(per_line.values())
    return Load(len(per_line), total, max(per_line.values(), default=0.0)), limit


def probe_extra_ms(plan, probe: Probe, scale: float) -> Tuple[float, float]:
    """(extra serialisation ms at ``scale``, the path's configured one-way delay ms), worst direction."""
    bits = 8.0 * (probe.size_bytes + PROBE_HEADER_BYTES)
    worst = (0.0, 0.0)
    ends = [(probe.src, probe.dst), (probe.dst, probe.src)] if probe.kind == "ping" else [
        (probe.src, probe.dst)]
    for a, b in ends:
        l3 = l3_path(plan, a, b)
        extra = 0.0
        delay = 0.0
        for link, direction in path_links(plan, l3):
            prof = link_profile(link, direction)
            delay += prof.delay_ms
            if prof.rate_bps:
                extra += (scale - 1.0) * bits / prof.rate_bps * 1000.0
        if extra > worst[0] or worst == (0.0, 0.0):
            worst = (extra, delay)
    return worst


def physics_reason(step_kinds: Sequence[str], load: Optional[Load] = None,
                   flow_limits: Sequence[Tuple[str, str]] = ()) -> Optional[str]:
    """Why this variant must not be scaled automatically at all, or None.

    ``flow_limits``: (step kind, limit) of the tcp steps whose TCP bound is not the link's.
    Probes are judged for a given K by :func:`probe_reason`.
    """
    for kind in step_kinds:
        if kind in NEVER_SCALED_STEPS:
            return f"the variant has {NEVER_SCALED_STEPS[kind]} ({kind}), which scaling would change"
    for kind, limit in flow_limits:
        return (f"TCP's {limit} bound, not the link, sets the {kind} step's rate: "
                f"that rate does not scale with the link's")
    if load is not None and load.loss_limited:
        return (f"loss on the path of {', '.join(load.loss_limited[:3])}: a scaled lab sends K times "
                f"fewer packets per message, so fewer messages lose one and wait a round trip to "
                f"recover it (and a loss-based TCP's rate does not scale with the link's)")
    if load is not None and load.window_limited:
        return (f"TCP's window, not the link, limits {', '.join(load.window_limited[:3])}: a window "
                f"is not scaled, so on links K times slower it would carry K times more than the "
                f"real link does")
    return None


def probe_reason(plan, probes: Sequence[Probe], scale: float) -> Optional[str]:
    """Why ``scale`` would change what the probes measure, or None."""
    for probe in probes:
        extra, delay = probe_extra_ms(plan, probe, scale)
        if extra > PROBE_SERIALISATION_SHARE * delay:
            return (f"the variant has {PROBE_STEPS[probe.kind]} ({probe.kind}): at scale {scale:g} "
                    f"each would take {extra * 1000:.1f} us longer to serialise, above "
                    f"{PROBE_SERIALISATION_SHARE:.0%} of the path's {delay:g} ms one-way delay")
    return None


def _fits(load: Load, k: float, capacity) -> Tuple[bool, float]:
    cap = capacity(load.lines)
    return load.total_bps / k <= MARGIN * cap, cap


def choose_scale(load: Load, capacity, why_not: Optional[str] = None) -> Decision:
    """The smallest K of CANDIDATES within ``MARGIN`` of ``capacity(lines)`` (bits/s)."""
    if why_not:
        return Decision(1.0, AUTO, f"not scaled: {why_not}", load)
    if load.lines == 0 or load.total_bps <= 0:
        return Decision(1.0, AUTO, "no delay line carries traffic: nothing to scale", load)
    for k in CANDIDATES:
        ok, cap = _fits(load, k, capacity)
        if ok:
            return Decision(float(k), AUTO, _explain(load, k, cap), load, cap, True)
    k = CANDIDATES[-1]
    return Decision(float(k), AUTO, _explain(load, k, cap) + " (the largest K tried: still above)",
                    load, cap, False)


def explicit(scale: float, load: Optional[Load], capacity) -> Decision:
    """An explicit K, and whether it kept the load inside the margin (None: not known)."""
    if load is None or capacity is None or load.lines == 0:
        return Decision(float(scale), "explicit", f"scale {scale:g} as given", load)
    ok, cap = _fits(load, scale, capacity)
    text = (f"scale {scale:g} as given: {load.lines} delay lines carry {load.total_bps / scale / 1e9:.2f} "
            f"Gbit/s at once, {'within' if ok else 'ABOVE'} {MARGIN:.0%} of the "
            f"{cap / 1e9:.2f} Gbit/s this machine carried through as many in MTU packets")
    return Decision(float(scale), "explicit", text, load, cap, ok)


def _explain(load: Load, k: float, cap: float) -> str:
    return (f"scale {k:g}: at peak {load.lines} delay lines carry {load.total_bps / 1e9:.2f} Gbit/s "
            f"at once; this machine carried {cap / 1e9:.2f} Gbit/s through as many in MTU packets; "
            f"K = {k:g} keeps it at {load.total_bps / k / 1e9:.2f} Gbit/s, within {MARGIN:.0%}")


def _new_namespace_tcp() -> tcpmodel.HostTcp:
    """What a new namespace's sockets get here: the kernel copies the root namespace's
    ``tcp_rmem``, ``tcp_wmem`` and default congestion control into every new one
    (read here, before any lab host exists; ``tcp_slow_start_after_idle`` starts at 1)."""
    sysctls = {}
    for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_congestion_control"):
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as fh:
                sysctls[key] = fh.read().strip()
        except OSError:
            continue
    try:
        return tcpmodel.HostTcp.from_sysctls(sysctls)
    except InputError:  # an unreadable triple: the kernel's own defaults
        return tcpmodel.HostTcp()


def plan_for(topology: str, params: Mapping, links: Mapping, host_sysctls: Optional[Mapping] = None):
    """The :class:`~testbed.lab.plan.LabPlan` a topology would get (no root, nothing created)."""
    from testbed.lab.lab import VALIDATION_BLOCK
    from testbed.lab.plan import make_plan
    from testbed.topologies import build_topology

    return make_plan(build_topology(topology, dict(params)), "autoscale", VALIDATION_BLOCK,
                     dict(links), strict_links=False)


def decide(setting, plan, step_kinds: Sequence[str] = ("collective",), op: str = "allreduce",
           nsocks: int = 1, buffsize_bytes: Optional[int] = 4 * 1024 * 1024,
           host_sysctls: Optional[Mapping] = None, cc: Optional[str] = None,
           flows: Sequence[Flow] = (), probes: Sequence[Probe] = (),
           capacity_doc=None, progress=lambda _m: None) -> Decision:
    """The K for ``setting`` ("auto" or a number) on ``plan``: see the module docstring.

    ``flows``: the variant's tcp and udp steps; ``probes``: its ping and owd
    steps. ``capacity_doc`` None: the cached capacity, measured first when
    missing or stale (needs root; about a minute).
    """
    from testbed import capacity as cap_mod
    from testbed.lab.lab import min_mtu

    mtu = min_mtu(plan)  # the capacity of lines carrying packets of this size

    def reader(doc):
        return lambda lines: cap_mod.lines_capacity_bps(doc, lines, mtu)

    base = _new_namespace_tcp()
    host = tcpmodel.HostTcp.from_sysctls(host_sysctls or {}, congestion=cc, base=base)
    flow_host = tcpmodel.HostTcp.from_sysctls(host_sysctls or {}, base=base)
    loads: List[Load] = []
    if any(k in ("collective", "training", "storage") for k in step_kinds):
        loads.append(estimate_load(plan, op, nsocks, buffsize_bytes, host))
    flow_limits = []
    for flow in flows:
        load, limit = flow_load(plan, flow, flow_host)
        loads.append(load)
        if limit:
            flow_limits.append((flow.kind, limit))
    loads = [x for x in loads if x.lines and x.total_bps > 0] or loads[:1]
    if setting != AUTO:
        if not loads:
            return Decision(float(setting), "explicit", f"scale {float(setting):g} as given")
        doc = capacity_doc if capacity_doc is not None else cap_mod.load_cached()
        capacity = reader(doc) if doc else None
        judged = [explicit(float(setting), x, capacity) for x in loads]
        return next((d for d in judged if d.enough is False), judged[0])
    if not loads:
        return Decision(1.0, AUTO, "not scaled: no step sends traffic through a delay line")
    worst = max(loads, key=lambda x: (x.total_bps, x.lines))
    why_not = physics_reason(step_kinds, next(
        (x for x in loads if x.loss_limited or x.window_limited), worst), flow_limits)
    if why_not or all(x.lines == 0 for x in loads):
        return choose_scale(worst, lambda n: 0.0, why_not)
    doc = capacity_doc if capacity_doc is not None else cap_mod.get_capacity(progress=progress)
    decisions = [choose_scale(x, reader(doc)) for x in loads if x.lines]
    decision = max(decisions, key=lambda d: d.scale)
    if decision.scale > 1:
        why_probes = probe_reason(plan, probes, decision.scale)
        if why_probes:
            return choose_scale(decision.load, lambda n: 0.0, why_probes)
    return decision


def _variant_flows(steps, ends) -> Tuple[List[Flow], List[Probe]]:
    flows, probes = [], []
    for kind, options in steps:
        if kind == "tcp":
            flows.append(Flow("tcp", ends["src"], ends["dst"], options.streams,
                              window_bytes=options.window_bytes, cc=options.cc))
        elif kind == "udp":
            flows.append(Flow("udp", ends["src"], ends["dst"], bitrate_bps=options.bitrate_bps))
        elif kind in PROBE_STEPS:
            probes.append(Probe(kind, ends["src"], ends["dst"], options.size_bytes))
    return flows, probes


def for_variant(scenario, index: int, progress=lambda _m: None, capacity_doc=None) -> Decision:
    """The K of one variant of a scenario (its ``scale``: "auto" or a number)."""
    config = scenario.variant_config(index)
    plan = plan_for(scenario.topology, config["params"], config["links"])
    steps = scenario.steps(index)
    kinds = [k for k, _ in steps]
    col = next((o for k, o in steps if k == "collective"), None)
    hosts = sorted(n.name for n in plan.hosts())
    ends = config["endpoints"] or {"src": hosts[0], "dst": hosts[-1]}
    flows, probes = _variant_flows(steps, ends)
    kwargs = {}
    if col is not None:
        kwargs = dict(op=col.op, nsocks=col.nsocks, buffsize_bytes=col.buffsize_bytes, cc=col.cc)
    return decide(scenario.scale, plan, kinds, host_sysctls=config["host_sysctls"], flows=flows,
                  probes=probes, capacity_doc=capacity_doc, progress=progress, **kwargs)
