"""Sweep a collective over sizes on a lab: place ranks, build, run, check, model.

The nccl-tests loop for the testbed: ranks are placed ``gpus_per_host`` per
host (hosts in name order), the ring order is topology-aware (each site's
ranks contiguous, so the ring crosses sites as few times as possible) or
naive, every size is run ``warmup + iters`` times through the
:class:`~testbed.collectives.engine.CollectiveEngine`, the outputs of the
last iteration are checked element by element against numpy (``#wrong``),
and each row carries the alpha-beta model's time for the same algorithm on
the configured links (alpha from the one-way path delay, beta from the
bottleneck rate). On a lab with ``scale`` K (:mod:`testbed.scale`) each size
sends size / K bytes over links K times slower; rows, times and the model are
at real scale, and ``sent_bytes`` says what crossed the links.

``protocol`` (:mod:`testbed.collectives.protocol`): ``eager`` runs the
schedule as the algorithm builds it (NCCL-style credits, the default);
``rendezvous`` adds a zero-byte "ready" transfer per message, receiver to
sender, with at most ``window`` buffers announced ahead per pair (gloo's tcp
transport and MPI's large-message protocol). The closed forms of
:mod:`testbed.collectives.model` are eager-only, so a rendezvous row's model
is the simulator's time (:func:`simulated_model_us`) for the schedule that
ran, with the same per-pair (local or WAN) alpha and beta.

gloo's own ring allreduce (``gloo/allreduce.cc``) is this engine's ring with
``order="naive"`` (rank order), ``nchunks=2`` (each rank's block cut into
two segments), ``protocol="rendezvous"`` and ``window=2``: :data:`GLOO_RING`
holds those keyword arguments (``run_sweep(lab, "allreduce", "ring", sizes,
**GLOO_RING)``; from the command line ``--order naive --nchunks 2 --protocol
rendezvous --window 2``).

Over a lossy WAN path every message crossing it may lose a segment and wait
for its recovery (:func:`testbed.tcpmodel.loss_recovery_us`, from the
message's real-scale size, the path's configured loss and RTT, and the
connections' window): the expected wait is added to the WAN alpha
(``loss_recovery_us`` in the row). A stream of messages also stalls: while a
hole is open a connection whose window cannot cover the recovery stops
sending (:func:`testbed.tcpmodel.recovery_stall_factor`), so for a congestion
control without a loss bound (BBR) the WAN edges' beta floor is raised by
that factor (``recovery_stall_factor`` in the row); a loss-based one's loss
bound already holds the stalls. Where the floor already slows a message
(the loss bound's slowdown, or the stalls'), only what the recovery adds
beyond that slowdown is counted in the alpha.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from testbed import tcpmodel
from testbed.collectives import model, ops, verdict
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.algorithms._common import DEFAULT_CHUNK_BYTES
from testbed.collectives.engine import CollectiveEngine, place_ranks
from testbed.collectives.order import groups_from_labels, naive_order, site_of, topology_aware_order
from testbed.collectives.protocol import (
    DEFAULT_WINDOW,
    EAGER,
    GLOO_SEGMENTS_PER_BLOCK,
    PROTOCOLS,
    RENDEZVOUS,
    apply_protocol,
)
from testbed.collectives.schedule import Schedule
from testbed.collectives.simulate import simulate_time_us, site_link
from testbed.collectives.table import row_dict
from testbed.collectives.tcpedges import PathTcp, host_tcp, path_tcp
from testbed.errors import InputError
from testbed.lab.paths import l3_path, path_profile
from testbed.scale import scaled_bytes

__all__ = ["link_params", "site_params", "algo_params", "check_options", "simulated_model_us",
           "run_sweep", "ORDERS", "GLOO_RING"]

ORDERS = ("topology", "naive")

#: run_sweep's keyword arguments for gloo's ring allreduce: rank order, two
#: segments per rank's block, rendezvous with two receives posted per peer
#: (:func:`testbed.collectives.protocol.gloo_ring_params`).
GLOO_RING: Dict[str, Any] = {"order": "naive", "nchunks": GLOO_SEGMENTS_PER_BLOCK,
                             "protocol": RENDEZVOUS, "window": DEFAULT_WINDOW}
CHUNKED = ("ring", "tree", "hierarchical")  # the algorithms that take chunk_bytes / nchunks
UNSHAPED_BETA_US_PER_BYTE = 8 / 10e9 * 1e6  # [assumption] an unshaped veth: ~10 Gbit/s here


def link_params(plan, a: str, b: str, scale: float = 1.0):
    """(alpha_us, beta_us_per_byte) of the path between hosts a and b, at real scale.

    A shaped path's rate is the configured one (the kernel gets rate / scale
    and carries bytes / scale). An unshaped path runs at what this machine's
    veths carry of the bytes actually sent, so on a lab with ``scale`` K it
    stands for K times that. ``plan`` is the lab's :class:`~testbed.lab.plan.LabPlan`.
    """
    pred = path_profile(plan, l3_path(plan, a, b))
    if pred["bottleneck_bps"]:
        return model.alpha_beta_from_links(pred["owd_forward_ms"], pred["bottleneck_bps"])
    return pred["owd_forward_ms"] * 1000.0, UNSHAPED_BETA_US_PER_BYTE / scale


def algo_params(algorithm: str, groups, order: str, chunk_bytes: Optional[int],
                nchunks: Optional[int] = None) -> dict:
    """The builder's parameters: ``order`` for ring/tree/rabenseifner, ``groups`` for hierarchical,
    ``chunk_bytes`` or ``nchunks`` (at most one) for the chunked ones (ring, tree, hierarchical)."""
    check_options(order=order, chunk_bytes=chunk_bytes, nchunks=nchunks)
    ranks = sum(len(g) for g in groups)
    params: dict = {}
    if algorithm == "hierarchical":
        params["groups"] = [list(g) for g in groups]
    elif algorithm in ("ring", "tree", "rabenseifner"):
        params["order"] = topology_aware_order(groups) if order == "topology" else naive_order(ranks)
    if algorithm in CHUNKED:
        if chunk_bytes:
            params["chunk_bytes"] = chunk_bytes
        elif nchunks is not None:
            params["nchunks"] = nchunks
    return params


def _real_scale_chunks(algorithm: str, params: dict, scale: float) -> dict:
    """The algorithm parameters for the closed-form model at real scale.

    Chunk sizes are not divided by ``scale`` (docs/collectives.md), so on a
    scale-K lab a chunk of C bytes carries what C x K real bytes would: the
    model cuts the real size into as many chunks as the lab cut the bytes it sent.
    """
    if scale == 1 or "nchunks" in params or algorithm not in CHUNKED:
        return params
    return {**params, "chunk_bytes": int(params.get("chunk_bytes", DEFAULT_CHUNK_BYTES) * scale)}


def check_options(order: Any = "topology", chunk_bytes: Any = None, nchunks: Any = None,
                  protocol: Any = EAGER, window: Any = DEFAULT_WINDOW) -> None:
    """:func:`run_sweep`'s options checked without a lab: InputError naming the bad one."""
    if order not in ORDERS:
        raise InputError("order", f"must be one of {', '.join(ORDERS)}, not {order!r}")
    if nchunks is not None:
        if isinstance(nchunks, bool) or not isinstance(nchunks, int) or nchunks < 1:
            raise InputError("nchunks", f"must be an integer >= 1, got {nchunks!r}")
        if chunk_bytes:
            raise InputError("nchunks", "give chunk_bytes or nchunks, not both")
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise InputError("protocol", f"must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InputError("window", f"must be an integer >= 1, got {window!r}")


def site_params(lab, nodes: Mapping[str, Any], rank_host: Sequence[str]
                ) -> Tuple[List[List[int]], Tuple[float, float], Tuple[float, float]]:
    """(groups, local, wan): ranks grouped by site, and (alpha_us, beta_us_per_byte) at real scale
    inside the first site (between its first and last host; (0, 0) with one host) and between
    the first hosts of the first and last sites (``local`` with one site)."""
    groups = groups_from_labels([nodes[h].site for h in rank_host])
    hosts = list(dict.fromkeys(rank_host))
    plan = lab.plan
    scale = float(getattr(lab, "scale", 1.0))
    site_hosts = [rank_host[g[0]] for g in groups]
    same_site = [h for h in hosts if nodes[h].site == nodes[site_hosts[0]].site]
    local = link_params(plan, same_site[0], same_site[-1], scale) if len(same_site) > 1 else (0.0, 0.0)
    wan = link_params(plan, site_hosts[0], site_hosts[-1], scale) if len(site_hosts) > 1 else local
    return groups, local, wan


def simulated_model_us(schedule: Schedule, groups: Sequence[Sequence[int]],
                       local: Tuple[float, float], wan: Tuple[float, float],
                       scale: float = 1.0) -> float:
    """The simulator's time (us, real scale) of ``schedule`` as it ran on a lab of ``scale`` K.

    Per pair of ranks the ``local`` or ``wan`` (alpha_us, beta_us_per_byte)
    of :func:`site_params` (:func:`~testbed.collectives.simulate.site_link`,
    one WAN link per direction shared by the crossings). ``schedule`` carries
    1/K of the real bytes over links K times slower, so every byte it sends
    costs K x beta; its chunks are those it was built with (cut from the bytes
    sent). Zero-byte rendezvous notifications hold no port.
    """
    byte_cost = float(scale)
    link = site_link(site_of(groups), (local[0], local[1] * byte_cost), (wan[0], wan[1] * byte_cost))
    return simulate_time_us(schedule, link=link)


def _model_us(op, algorithm, ranks, size, params, groups, local, wan,
              wan_floor_beta: float = 0.0) -> Optional[float]:
    try:
        if algorithm == "hierarchical":
            return model.model_time_us(op, algorithm, ranks, size, local[0], local[1],
                                       alpha_wan_us=wan[0], beta_wan_us_per_byte=wan[1], **params)
        if len(groups) > 1 and algorithm == "ring":
            # edge by edge: chunk 0 pays the WAN latency only where the ring crosses (the
            # model takes alpha and beta from the edges)
            params = {**params, "edges": model.ring_edge_params(params["order"], groups, local, wan,
                                                                 wan_floor_beta=wan_floor_beta)}
        alpha, beta = wan if len(groups) > 1 else local
        beta = max(beta, wan_floor_beta) if len(groups) > 1 else beta
        return model.model_time_us(op, algorithm, ranks, size, alpha, beta, **params)
    except (InputError, ValueError, KeyError):
        return None  # no model for this combination: the row says so


def tcp_limits(lab, nodes: Mapping[str, Any], rank_host: Sequence[str], nsocks: int,
               buffsize_bytes: int, cc: Optional[str] = None) -> Dict[str, Optional[PathTcp]]:
    """The TCP bound of the two paths :func:`site_params` models ("local", "wan"; None where
    there is no such path or nothing but the link bounds it), for ``nsocks`` connections with
    at most ``buffsize_bytes`` in flight each, with the first host's sysctls."""
    groups = groups_from_labels([nodes[h].site for h in rank_host])
    hosts = list(dict.fromkeys(rank_host))
    plan = lab.plan
    host = host_tcp(nodes[hosts[0]], cc)
    site_hosts = [rank_host[g[0]] for g in groups]
    same_site = [h for h in hosts if nodes[h].site == nodes[site_hosts[0]].site]
    out: Dict[str, Optional[PathTcp]] = {"local": None, "wan": None}
    if len(same_site) > 1:
        out["local"] = path_tcp(plan, same_site[0], same_site[-1], host, nsocks, buffsize_bytes)
    if len(site_hosts) > 1:
        out["wan"] = path_tcp(plan, site_hosts[0], site_hosts[-1], host, nsocks, buffsize_bytes)
    return out


def _tcp_floored(local: Tuple[float, float], tcp: Mapping[str, Optional[PathTcp]]):
    """(local with its beta raised to the TCP bound's, the WAN edges' beta floor)."""
    if tcp.get("local") is not None:
        local = (local[0], max(local[1], tcp["local"].beta_us_per_byte))
    wan_floor = tcp["wan"].beta_us_per_byte if tcp.get("wan") is not None else 0.0
    return local, wan_floor


def _binding(path: PathTcp, local, wan, which: str) -> bool:
    """Whether the TCP bound, not the link, is the path's limit."""
    link_beta = (local if which == "local" else wan)[1]
    return path.beta_us_per_byte > link_beta * (1 + 1e-9)


def _slow_start_us(tcp: Mapping[str, Optional[PathTcp]], schedule: Schedule, groups,
                   rank_host: Sequence[str], scale: float, betas: Mapping[str, float]) -> float:
    """Slow start of fresh connections (warmup 0): the largest over host pairs of the ramp
    for the bytes the pair carries in an iteration, at the rate its path allows."""
    where = site_of(groups)
    by_pair: Dict[Tuple[str, str, str], float] = {}
    for t in schedule.transfers:
        if rank_host[t.src] == rank_host[t.dst]:
            continue
        key = (rank_host[t.src], rank_host[t.dst], "wan" if where[t.src] != where[t.dst] else "local")
        by_pair[key] = by_pair.get(key, 0.0) + t.nbytes() * scale
    worst = 0.0
    for (_a, _b, which), nbytes in by_pair.items():
        path = tcp.get(which)
        if path is None:
            continue
        rate = 8e6 / max(betas[which], path.beta_us_per_byte)
        worst = max(worst, tcpmodel.slow_start_us(nbytes, rate, path.rtt_ms, 1448))
    return worst


def wan_stall_factor(tcp: Mapping[str, Optional[PathTcp]], wan_beta: float, wan_floor: float) -> float:
    """The WAN edges' recovery-stall factor (>= 1; module docstring): 1 without a lossy WAN
    path, or where a loss-based congestion control's loss bound holds the stalls."""
    path = tcp.get("wan")
    if path is None or path.loss_pct <= 0 or path.congestion in tcpmodel.LOSS_BASED:
        return 1.0
    rate_bps = 8e6 / max(wan_beta, wan_floor)  # the link's rate, or the window's below it
    return tcpmodel.recovery_stall_factor(rate_bps, path.bound.window_bps, path.bound.connections,
                                          path.rtt_ms, path.loss_pct, tcpmodel.mss_bytes(path.mtu))


def wan_loss_recovery_us(tcp: Mapping[str, Optional[PathTcp]], schedule: Schedule, groups,
                         scale: float, wan_beta: float, stall_beta: float = 0.0) -> float:
    """Expected loss-recovery wait (us) of one message over the WAN path (module docstring).

    The message: the largest the schedule sends from one site to another, at
    real scale, spread over the pair's connections, whose windows together hold
    ``window_bps x RTT``. 0 without a lossy WAN path. ``stall_beta``: what the
    recovery stalls add to the WAN beta (us per byte), which already slows the
    message by that much.
    """
    path = tcp.get("wan")
    if path is None or path.loss_pct <= 0:
        return 0.0
    where = site_of(groups)
    sizes = [t.nbytes() * scale for t in schedule.transfers if where[t.src] != where[t.dst]]
    if not sizes:
        return 0.0
    nbytes = max(sizes)
    window_bytes = path.bound.window_bps * path.rtt_ms / 1000.0 / 8.0  # a PathTcp has an RTT
    wait_us = tcpmodel.loss_recovery_us(nbytes, path.rtt_ms, path.loss_pct,
                                        tcpmodel.mss_bytes(path.mtu), window_bytes)
    if path.bound.limit != "loss":
        return max(0.0, wait_us - nbytes * stall_beta)
    # the loss bound's own slowdown of the message already holds that much of the wait
    return max(0.0, wait_us - nbytes * max(0.0, path.beta_us_per_byte - wan_beta))


def _snapshot(lab) -> Optional[dict]:
    """:func:`verdict.snapshot` of a real lab (None for one without delay-line statistics)."""
    if not hasattr(lab, "delay_line_stats"):
        return None
    return verdict.snapshot(lab)


def run_sweep(lab, op: str, algorithm: str, sizes: Sequence[int], gpus_per_host: int = 1,
              iters: int = 5, warmup: int = 1, nsocks: int = 1,
              buffsize_bytes: int = 4 * 1024 * 1024, order: str = "topology",
              chunk_bytes: Optional[int] = None, hosts: Optional[Sequence[str]] = None,
              progress: Callable[[str], None] = lambda _m: None, nchunks: Optional[int] = None,
              protocol: str = EAGER, window: int = DEFAULT_WINDOW,
              cc: Optional[str] = None, scale_enough: Optional[bool] = None) -> List[dict]:
    """One row per size (module docstring); ``protocol``/``window`` as in
    :func:`~testbed.collectives.protocol.apply_protocol`, ``nchunks`` cuts the
    buffer into that many pipelined chunks instead of ``chunk_bytes`` messages,
    ``cc`` is the congestion control of the engine's sockets (None: the hosts' default);
    every row gets a verdict (:mod:`testbed.collectives.verdict`), ``scale_enough`` False
    (an explicit scale below what the load needs) making a pass a warn."""
    if op not in ops.OPS:
        raise InputError("op", f"unknown operation {op!r} (known: {', '.join(ops.OPS)})")
    check_options(order, chunk_bytes, nchunks, protocol, window)
    host_names = list(hosts) if hosts else [h.name for h in lab.hosts()]
    nodes = {h: lab.node(h) for h in host_names}
    rank_host = place_ranks(host_names, gpus_per_host)
    ranks = len(rank_host)
    groups, local, wan = site_params(lab, nodes, rank_host)
    tcp = tcp_limits(lab, nodes, rank_host, nsocks, buffsize_bytes, cc)
    limited = [k for k, v in tcp.items() if v is not None and _binding(v, local, wan, k)]
    local, wan_floor = _tcp_floored(local, tcp)
    stall = wan_stall_factor(tcp, wan[1], wan_floor)
    stall_beta = max(wan[1], wan_floor) * (stall - 1.0)
    if stall > 1.0:  # TCP's recovery, not the link, then sets the WAN edges' rate
        wan_floor = max(wan[1], wan_floor) * stall
        limited = limited if "wan" in limited else limited + ["wan"]
    params = algo_params(algorithm, groups, order, chunk_bytes, nchunks)
    scale = float(getattr(lab, "scale", 1.0))  # rates divided by it: send bytes / scale too
    engine = CollectiveEngine(nodes, rank_host, nsocks=nsocks, buffsize_bytes=buffsize_bytes, cc=cc)
    rows = []
    try:
        for size in sizes:
            count = ops.count_for_size(op, size, ranks)  # real scale: the row and the model
            sent = ops.count_for_size(op, scaled_bytes(size, scale, ops.ITEMSIZE), ranks)
            schedule = apply_protocol(build_schedule(op, algorithm, ranks, sent, root=0, **params),
                                      protocol, window)
            inputs = ops.make_inputs(op, ranks, sent)
            progress(f"{op} {algorithm} {ranks} ranks {size} B"
                     + (f" {protocol} window {window}" if protocol == RENDEZVOUS else "")
                     + (f" (sends {ops.size_bytes(op, sent, ranks)} B at scale {scale:g})" if scale != 1 else ""))
            before = _snapshot(lab)
            out = engine.run(schedule, inputs, warmup=warmup, iters=iters)
            after = _snapshot(lab)
            cpu_share = out["cpu_s"] / max(sum(out["times_s"]), 1e-9)  # of the timed iterations
            wrong = ops.count_wrong(op, out["outputs"], ops.expected(op, inputs, 0))
            times_us = [t * 1e6 for t in out["times_s"]]
            recovery_us = wan_loss_recovery_us(tcp, schedule, groups, scale, wan[1], stall_beta)
            wan_alpha = (wan[0] + recovery_us, wan[1])
            if protocol == EAGER:
                model_us = _model_us(op, algorithm, ranks, ops.size_bytes(op, count, ranks),
                                     _real_scale_chunks(algorithm, params, scale), groups, local,
                                     wan_alpha, wan_floor)
            else:  # the closed forms are eager-only: simulate the schedule that ran
                model_us = simulated_model_us(schedule, groups, local,
                                              (wan_alpha[0], max(wan[1], wan_floor)), scale)
            if model_us is not None and warmup == 0:
                model_us += _slow_start_us(tcp, schedule, groups, rank_host, scale,
                                           {"local": local[1], "wan": wan[1]}) / max(1, iters)
            row = row_dict(op, algorithm, ranks, count, statistics.fmean(times_us) if times_us else None,
                           wrong, 0 if op in ("broadcast", "reduce") else None, model_us)
            row.update(times_us=[round(t, 1) for t in times_us], gpus_per_host=gpus_per_host,
                       order=order if "order" in params else None, nsocks=nsocks,
                       buffsize_bytes=buffsize_bytes, engine="testbed", scale=scale,
                       sent_bytes=ops.size_bytes(op, sent, ranks), protocol=protocol,
                       window=window if protocol == RENDEZVOUS else None,
                       nchunks=params.get("nchunks"), engine_cpu_share=round(cpu_share, 2),
                       tcp={k: v.to_dict() for k, v in tcp.items() if v is not None},
                       tcp_limited=limited, loss_recovery_us=round(recovery_us, 1),
                       recovery_stall_factor=round(stall, 3))
            if before is not None and after is not None:
                judged = verdict.judge(before, after, round(cpu_share, 2), scale_enough, scale)
                row.update(verdict=judged["verdict"], verdict_reason=judged["reason"],
                           saturation=judged["evidence"])
            rows.append(row)
        rows and rows[-1].update(bytes_by_pair=engine.bytes_by_pair())
    finally:
        engine.close()
    return rows
