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
"""

from __future__ import annotations

import statistics
from typing import Callable, List, Optional, Sequence

from testbed import fidelity
from testbed.collectives import model, ops
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.engine import CollectiveEngine, place_ranks
from testbed.collectives.order import groups_from_labels, naive_order, topology_aware_order
from testbed.collectives.table import row_dict
from testbed.errors import InputError
from testbed.scale import scaled_bytes

__all__ = ["link_params", "algo_params", "run_sweep", "ORDERS"]

ORDERS = ("topology", "naive")
UNSHAPED_BETA_US_PER_BYTE = 8 / 10e9 * 1e6  # [assumption] an unshaped veth: ~10 Gbit/s here


def link_params(plan: dict, a: str, b: str, scale: float = 1.0):
    """(alpha_us, beta_us_per_byte) of the path between hosts a and b, at real scale.

    A shaped path's rate is the configured one (the kernel gets rate / scale
    and carries bytes / scale). An unshaped path runs at what this machine's
    veths carry of the bytes actually sent, so on a lab with ``scale`` K it
    stands for K times that.
    """
    pred = fidelity.predict(plan, fidelity.l3_path(plan, a, b))
    if pred["bottleneck_bps"]:
        return model.alpha_beta_from_links(pred["owd_forward_ms"], pred["bottleneck_bps"])
    return pred["owd_forward_ms"] * 1000.0, UNSHAPED_BETA_US_PER_BYTE / scale


def algo_params(algorithm: str, groups, order: str, chunk_bytes: Optional[int]) -> dict:
    if order not in ORDERS:
        raise InputError("order", f"must be one of {', '.join(ORDERS)}, not {order!r}")
    ranks = sum(len(g) for g in groups)
    params: dict = {}
    if algorithm == "hierarchical":
        params["groups"] = [list(g) for g in groups]
    elif algorithm in ("ring", "tree", "rabenseifner"):
        params["order"] = topology_aware_order(groups) if order == "topology" else naive_order(ranks)
    if chunk_bytes and algorithm in ("ring", "tree", "hierarchical"):
        params["chunk_bytes"] = chunk_bytes
    return params


def _model_us(op, algorithm, ranks, size, params, groups, local, wan) -> Optional[float]:
    try:
        if algorithm == "hierarchical":
            return model.model_time_us(op, algorithm, ranks, size, local[0], local[1],
                                       alpha_wan_us=wan[0], beta_wan_us_per_byte=wan[1], **params)
        if len(groups) > 1 and algorithm == "ring":
            # edge by edge: chunk 0 pays the WAN latency only where the ring crosses
            edges = model.ring_edge_params(params["order"], groups, local, wan)
            alpha, beta = max(a for a, _ in edges), max(b for _, b in edges)
            return model.model_time_us(op, algorithm, ranks, size, alpha, beta, edges=edges,
                                       **params)
        alpha, beta = wan if len(groups) > 1 else local
        return model.model_time_us(op, algorithm, ranks, size, alpha, beta, **params)
    except (InputError, ValueError, KeyError):
        return None  # no model for this combination: the row says so


def run_sweep(lab, op: str, algorithm: str, sizes: Sequence[int], gpus_per_host: int = 1,
              iters: int = 5, warmup: int = 1, nsocks: int = 1,
              buffsize_bytes: int = 4 * 1024 * 1024, order: str = "topology",
              chunk_bytes: Optional[int] = None, hosts: Optional[Sequence[str]] = None,
              progress: Callable[[str], None] = lambda _m: None) -> List[dict]:
    if op not in ops.OPS:
        raise InputError("op", f"unknown operation {op!r} (known: {', '.join(ops.OPS)})")
    host_names = list(hosts) if hosts else [h.name for h in lab.hosts()]
    nodes = {h: lab.node(h) for h in host_names}
    rank_host = place_ranks(host_names, gpus_per_host)
    ranks = len(rank_host)
    groups = groups_from_labels([nodes[h].site for h in rank_host])
    params = algo_params(algorithm, groups, order, chunk_bytes)
    plan = lab.doc["plan"]
    first = {g[0]: rank_host[g[0]] for g in groups}
    site_hosts = list(first.values())
    same_site = [h for h in host_names if nodes[h].site == nodes[site_hosts[0]].site]
    scale = float(getattr(lab, "scale", 1.0))  # rates divided by it: send bytes / scale too
    local = link_params(plan, same_site[0], same_site[-1], scale) if len(same_site) > 1 else (0.0, 0.0)
    wan = link_params(plan, site_hosts[0], site_hosts[-1], scale) if len(site_hosts) > 1 else local
    engine = CollectiveEngine(nodes, rank_host, nsocks=nsocks, buffsize_bytes=buffsize_bytes)
    rows = []
    try:
        for size in sizes:
            count = ops.count_for_size(op, size, ranks)  # real scale: the row and the model
            sent = ops.count_for_size(op, scaled_bytes(size, scale, ops.ITEMSIZE), ranks)
            schedule = build_schedule(op, algorithm, ranks, sent, root=0, **params)
            inputs = ops.make_inputs(op, ranks, sent)
            progress(f"{op} {algorithm} {ranks} ranks {size} B"
                     + (f" (sends {ops.size_bytes(op, sent, ranks)} B at scale {scale:g})" if scale != 1 else ""))
            out = engine.run(schedule, inputs, warmup=warmup, iters=iters)
            wrong = ops.count_wrong(op, out["outputs"], ops.expected(op, inputs, 0))
            times_us = [t * 1e6 for t in out["times_s"]]
            model_us = _model_us(op, algorithm, ranks, ops.size_bytes(op, count, ranks), params,
                                 groups, local, wan)
            row = row_dict(op, algorithm, ranks, count, statistics.fmean(times_us) if times_us else None,
                           wrong, 0 if op in ("broadcast", "reduce") else None, model_us)
            row.update(times_us=[round(t, 1) for t in times_us], gpus_per_host=gpus_per_host,
                       order=order if "order" in params else None, nsocks=nsocks,
                       buffsize_bytes=buffsize_bytes, engine="testbed", scale=scale,
                       sent_bytes=ops.size_bytes(op, sent, ranks))
            rows.append(row)
        rows and rows[-1].update(bytes_by_pair=engine.bytes_by_pair())
    finally:
        engine.close()
    return rows
