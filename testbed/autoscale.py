"""``scale: auto``: the smallest K that keeps the emulated load inside this machine's capacity.

Before a lab is built, :func:`estimate_load` works out the peak concurrent
load a collective-like step puts on the delay lines: every inter-host edge
the algorithm uses at once (consecutive hosts of the topology-aware ring,
and back; all pairs for alltoall) sends at what its path carries -- the
smaller of the bottleneck rate and the TCP bound of its connections
(:func:`testbed.tcpmodel.tcp_bound`) -- and every link direction with an
impairment (a delay line) on its path carries that. The load is the number
of such line directions in use and the bits per second through them all.

:func:`choose_scale` compares it with what this machine carried through as
many concurrent lines (:func:`testbed.capacity.lines_capacity_bps`, measured
by ``testbed doctor --bench`` and cached) and picks the smallest K of
:data:`CANDIDATES` with ``load / K <= MARGIN x capacity``.

Never automatically scaled (K = 1 with the reason), because scaling changes
what is measured: a variant with RTT, one-way delay or jitter probes (``ping``,
``owd``, ``timeline``), a ``tcp`` step over a lossy path, and a collective
whose edges are bound by TCP's loss bound (loss-based congestion control on a
lossy path: its rate does not scale with the link's). An explicit
``scale: K`` (1 included) is used as given; :func:`explicit` records whether
it was enough, which a row's verdict reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from testbed import tcpmodel
from testbed.errors import InputError
from testbed.lab.paths import l3_path, link_profile, path_links, path_profile

__all__ = ["CANDIDATES", "MARGIN", "AUTO", "Load", "Decision", "estimate_load", "choose_scale",
           "explicit", "physics_reason", "plan_for", "decide", "for_variant"]

AUTO = "auto"
#: the K auto picks from (1 = no scaling)
CANDIDATES: Tuple[int, ...] = (1, 2, 3, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 200, 500, 1000)
#: the share of the measured capacity a run may use. The capacity is what saturating TCP
#: pushes through unshaped lines (large GRO packets, lines running 20-60 ms late); shaped
#: links send smaller packets and a faithful line must stay within 1 ms. Measured here
#: (2 cores, issue 13): 16 lines carried 11.7 Gbit/s saturated, while star collectives
#: stayed at their model with 1.6 Gbit/s through 16 lines (8 hosts, 1 Gbit/s, scale 10)
#: and 0.8 through 8 (4 hosts, scale 10), and ran late with 4 Gbit/s through 8 (scale 2)
#: and 3.2 through 32 (16 hosts, scale 10): about 0.15 of the saturated figure.
MARGIN = 0.15
#: step kinds whose figures scaling would change (delays measured per packet)
PROBE_STEPS = {"ping": "RTT probes", "owd": "one-way delay and jitter probes",
               "timeline": "throughput and RTT over time through events"}


@dataclass
class Load:
    """Peak concurrent emulated load: line directions in use and the bits/s through them."""

    lines: int
    total_bps: float
    max_line_bps: float
    loss_limited: List[str] = field(default_factory=list)  # "a->b" edges bound by TCP's loss bound

    def to_dict(self) -> dict:
        return {"lines": self.lines, "total_bps": round(self.total_bps),
                "max_line_bps": round(self.max_line_bps), "loss_limited": list(self.loss_limited)}


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
    loss_limited = []
    for a, b in _edges(plan, op, hosts):
        l3 = l3_path(plan, a, b)
        hops = path_links(plan, l3)
        pred = path_profile(plan, l3)
        try:
            bound = tcpmodel.tcp_bound(pred["bottleneck_bps"], pred["rtt_ms"], pred["loss_pct"],
                                       pred["path_mtu"], host, nsocks, buffsize_bytes)
            rate = bound.rate_bps
            if bound.limit == "loss":
                loss_limited.append(f"{a}->{b}")
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
    return Load(len(per_line), total, max(per_line.values(), default=0.0), loss_limited)


def physics_reason(step_kinds: Sequence[str], tcp_lossy: bool, load: Optional[Load]) -> Optional[str]:
    """Why this variant must not be scaled automatically, or None."""
    for kind in step_kinds:
        if kind in PROBE_STEPS:
            return f"the variant has {PROBE_STEPS[kind]} ({kind}), which scaling would change"
    if "tcp" in step_kinds and tcp_lossy:
        return "a tcp step over a lossy path: TCP's rate there does not scale with the link's"
    if load is not None and load.loss_limited:
        return (f"TCP's loss bound, not the link, limits {', '.join(load.loss_limited[:3])}: "
                f"that rate does not scale with the link's")
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
            f"{cap / 1e9:.2f} Gbit/s this machine carried through as many")
    return Decision(float(scale), "explicit", text, load, cap, ok)


def _explain(load: Load, k: float, cap: float) -> str:
    return (f"scale {k:g}: at peak {load.lines} delay lines carry {load.total_bps / 1e9:.2f} Gbit/s "
            f"at once; this machine carried {cap / 1e9:.2f} Gbit/s through as many; "
            f"K = {k:g} keeps it at {load.total_bps / k / 1e9:.2f} Gbit/s, within {MARGIN:.0%}")


def _default_cc() -> str:
    """The congestion control a new namespace's sockets get here (its default follows the host's)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as fh:
            return fh.read().strip() or "cubic"
    except OSError:
        return "cubic"


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
           tcp_lossy: bool = False, capacity_doc=None, progress=lambda _m: None) -> Decision:
    """The K for ``setting`` ("auto" or a number) on ``plan``: see the module docstring.

    ``capacity_doc`` None: the cached capacity, measured first when missing or
    stale (needs root; about a minute).
    """
    from testbed import capacity as cap_mod

    host = tcpmodel.HostTcp.from_sysctls(host_sysctls or {}, congestion=cc,
                                         base=tcpmodel.HostTcp(congestion=_default_cc()))
    lab_steps = [k for k in step_kinds if k in ("collective", "training", "storage")]
    load = estimate_load(plan, op, nsocks, buffsize_bytes, host) if lab_steps else None
    if setting != AUTO:
        if load is None:
            return Decision(float(setting), "explicit", f"scale {float(setting):g} as given")
        doc = capacity_doc if capacity_doc is not None else cap_mod.load_cached()
        capacity = (lambda n: cap_mod.lines_capacity_bps(doc, n)) if doc else None
        return explicit(float(setting), load, capacity)
    if load is None:
        return Decision(1.0, AUTO, "not scaled: no collective, training or storage step")
    why_not = physics_reason(step_kinds, tcp_lossy, load)
    if why_not or load.lines == 0:
        return choose_scale(load, lambda n: 0.0, why_not)
    doc = capacity_doc if capacity_doc is not None else cap_mod.get_capacity(progress=progress)
    return choose_scale(load, lambda n: cap_mod.lines_capacity_bps(doc, n))


def for_variant(scenario, index: int, progress=lambda _m: None) -> Decision:
    """The K of one variant of a scenario (its ``scale``: "auto" or a number)."""
    config = scenario.variant_config(index)
    plan = plan_for(scenario.topology, config["params"], config["links"])
    steps = scenario.steps(index)
    kinds = [k for k, _ in steps]
    col = next((o for k, o in steps if k == "collective"), None)
    lossy = False
    if "tcp" in kinds:
        hosts = sorted(n.name for n in plan.hosts())
        ends = config["endpoints"] or {"src": hosts[0], "dst": hosts[-1]}
        lossy = path_profile(plan, l3_path(plan, ends["src"], ends["dst"]))["loss_pct"] > 0
    kwargs = {}
    if col is not None:
        kwargs = dict(op=col.op, nsocks=col.nsocks, buffsize_bytes=col.buffsize_bytes, cc=col.cc)
    return decide(scenario.scale, plan, kinds, host_sysctls=config["host_sysctls"], tcp_lossy=lossy,
                  progress=progress, **kwargs)
