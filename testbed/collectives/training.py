"""Data-parallel training steps across sites: compute, gradient allreduce, stragglers.

One training step, as DDP runs it, for every rank of the job:

1. compute: forward then backward, for a time drawn from the rank's GPU type
   (:data:`COMPUTE_MS`, or the scenario's ``compute_ms``) times a normal noise
   factor ``1 + N(0, noise_pct/100)`` (floored at 0.1);
2. communication: the gradient (``model_size`` bytes) is allreduced with the
   collectives engine -- real bytes over the lab's shaped links, flat ring or
   hierarchical -- in ``buckets`` pieces. Bucket k of a rank is ready once its
   forward and k+1 of ``buckets`` parts of its backward are done, so buckets
   overlap the rest of the backward as in DDP. A rank sends nothing of a
   bucket before it is ready (:meth:`CollectiveEngine.run_step`), so a slow
   GPU holds up everyone downstream in the ring, exactly as a real straggler.

Each step's wall time is measured; the report per placement gives step time
p50/p99, the compute and exposed-communication shares, scaling efficiency
against the same ranks in one site, and straggler attribution: for every
rank, how long it waited on the slowest compute (naming that rank's site and
GPU) and on communication after that (naming the link that carried the
slowest transfer: the bottleneck of its path).

The one-site baseline is not a second lab: it is the same step's slowest
compute plus the alpha-beta model's allreduce time over the site fabric
(the fabric is faster than this machine can emulate); the report says so.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from testbed.collectives import model, ops
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.bench import link_params
from testbed.collectives.engine import CollectiveEngine
from testbed.collectives.order import groups_from_labels, ring_crossings
from testbed.collectives.placement import place
from testbed.errors import InputError, RunError
from testbed.lab.paths import l3_path, link_profile, path_links
from testbed.scale import scaled_bytes
from testbed.topologies import build_topology

__all__ = ["COMPUTE_MS", "run_training", "percentile"]

# [assumption] milliseconds of forward + backward per step for the same
# per-rank batch, relative to an H100 at 100 ms: A100 about 2.5x slower on
# transformer training (H100's FP8/transformer engine), L40S about 2x, V100
# about 6x, T4 about 15x -- orders of magnitude from public MLPerf-style
# comparisons, not measurements; set compute_ms in the scenario for your model.
COMPUTE_MS: Dict[str, float] = {"H100": 100.0, "A100": 250.0, "L40S": 200.0, "V100": 600.0, "T4": 1500.0}
DTYPE_BYTES = ops.ITEMSIZE


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in [0, 100])."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    k = (len(data) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def _gpu_of_hosts(lab) -> Dict[str, str]:
    """Each host's GPU type, from the topology's node info (default H100)."""
    topo = build_topology(lab.doc["topology"], lab.doc.get("params") or {})
    return {h.name: topo.nodeInfo(h.name).get("gpu", "H100") for h in lab.hosts()}


def _bottleneck_link(plan, a: str, b: str) -> str:
    """The name of the slowest link on the path a -> b (lowest rate, then longest delay)."""
    best: Optional[Tuple[float, float, str]] = None
    for link, direction in path_links(plan, l3_path(plan, a, b)):
        prof = link_profile(link, direction)
        key = (prof.rate_bps or float("inf"), -prof.delay_ms, link.name)
        if best is None or key < best:
            best = key
    return best[2] if best else f"{a}-{b}"


def _site_cost(plan, first_host: Dict[str, str], message_bytes: int) -> Callable[[str, str], float]:
    cache: Dict[Tuple[str, str], float] = {}

    def cost(a: str, b: str) -> float:
        key = (a, b)
        if key not in cache:
            alpha_us, beta = link_params(plan, first_host[a], first_host[b])
            cache[key] = alpha_us + message_bytes * beta
        return cache[key]

    return cost


def _compute_s(gpu: str, compute_ms: Dict[str, float], noise_pct: float, rng: random.Random) -> float:
    base = compute_ms.get(gpu, COMPUTE_MS.get(gpu))
    if base is None:
        raise InputError("measure.training.compute_ms", f"no compute time for GPU type {gpu!r}")
    return base / 1000.0 * max(0.1, 1.0 + rng.gauss(0.0, noise_pct / 100.0))


def _attribute(rank_host, site_of, gpu_of, compute_s, transfers, plan, step_s) -> dict:
    """Who every rank waited on in one step, and for how long."""
    slowest = max(range(len(compute_s)), key=lambda r: compute_s[r])
    # the slowest cross-host transfer of the step names the communication culprit
    cross = [t for t in transfers if rank_host[t[1]] != rank_host[t[2]]]
    worst_link, worst_pair = None, None
    if cross:
        tid, src, dst, nbytes, start, end = max(cross, key=lambda t: t[5] - t[4])
        worst_pair = f"{rank_host[src]}->{rank_host[dst]}"
        worst_link = _bottleneck_link(plan, rank_host[src], rank_host[dst])
    ranks = []
    for r, host in enumerate(rank_host):
        wait_compute = compute_s[slowest] - compute_s[r]
        wait_comm = max(0.0, step_s - compute_s[slowest])
        ranks.append({"rank": r, "host": host, "site": site_of[host], "gpu": gpu_of[host],
                      "compute_ms": round(compute_s[r] * 1000, 3),
                      "waited_compute_ms": round(wait_compute * 1000, 3),
                      "waited_compute_on": f"site {site_of[rank_host[slowest]]} "
                                           f"({gpu_of[rank_host[slowest]]}, rank {slowest})",
                      "waited_comm_ms": round(wait_comm * 1000, 3),
                      "waited_comm_on": f"link {worst_link}" if worst_link else None})
    return {"ranks": ranks, "slowest_rank": slowest, "slowest_site": site_of[rank_host[slowest]],
            "bottleneck_link": worst_link, "bottleneck_pair": worst_pair}


def _run_placement(lab, engine_nodes, strategy, hosts, site_of, gpu_of, options, progress) -> dict:
    plan = lab.plan
    scale = float(getattr(lab, "scale", 1.0))
    first_host = {}
    for h in hosts:
        first_host.setdefault(site_of[h], h)
    grad_bytes = options["model_size_bytes"]
    bucket_bytes = max(DTYPE_BYTES, grad_bytes // options["buckets"])
    cost = _site_cost(plan, first_host, bucket_bytes)
    rank_host = place(strategy, hosts, site_of, options["gpus_per_host"], cost)
    ranks = len(rank_host)
    groups = groups_from_labels([site_of[h] for h in rank_host])
    params: dict = {"order": list(range(ranks))}
    if options["algorithm"] == "hierarchical":
        params = {"groups": groups}
    sent = ops.count_for_size("allreduce", scaled_bytes(bucket_bytes, scale, DTYPE_BYTES), ranks)
    schedule = build_schedule("allreduce", options["algorithm"], ranks, sent, root=0, **params)
    inputs = ops.make_inputs("allreduce", ranks, sent)
    want = ops.expected("allreduce", inputs, 0)
    rng = random.Random(options["seed"])
    engine = CollectiveEngine(engine_nodes, rank_host)
    steps, attributions, wrong = [], [], 0
    backward = options["backward_share"]
    try:
        for step in range(options["warmup_steps"] + options["steps"]):
            compute = [_compute_s(gpu_of[h], options["compute_ms"], options["noise_pct"], rng)
                       for h in rank_host]
            started = time.perf_counter()
            transfers_all: List[tuple] = []
            for k in range(options["buckets"]):
                offset = time.perf_counter() - started
                ready = [max(0.0, c * (1 - backward) + c * backward * (k + 1) / options["buckets"] - offset)
                         for c in compute]
                out = engine.run_step(schedule, inputs, ready)
                wrong += ops.count_wrong("allreduce", out["outputs"], want)
                transfers_all.extend(t[:4] + (t[4] + offset, t[5] + offset) for t in out["transfers"])
            step_s = time.perf_counter() - started
            if step < options["warmup_steps"]:
                continue
            steps.append({"step_ms": round(step_s * 1000, 3),
                          "compute_max_ms": round(max(compute) * 1000, 3),
                          "comm_exposed_ms": round(max(0.0, step_s - max(compute)) * 1000, 3)})
            attributions.append(_attribute(rank_host, site_of, gpu_of, compute, transfers_all,
                                           plan, step_s))
            progress(f"{strategy}: step {len(steps)}/{options['steps']} {step_s * 1000:.0f} ms")
        pairs = engine.bytes_by_pair()
    finally:
        engine.close()
    step_ms = [s["step_ms"] for s in steps]
    compute_ms = [s["compute_max_ms"] for s in steps]
    fabric = _fabric_params(plan, hosts, site_of)
    one_site_us = model.model_time_us("allreduce", "ring", ranks, grad_bytes, fabric[0], fabric[1],
                                      order=list(range(ranks))) if ranks > 1 else 0.0
    baseline_ms = [c + one_site_us / 1000.0 for c in compute_ms]
    culprits: Dict[str, int] = {}
    for a in attributions:
        if a["bottleneck_link"]:
            culprits[a["bottleneck_link"]] = culprits.get(a["bottleneck_link"], 0) + 1
    slow_sites: Dict[str, int] = {}
    for a in attributions:
        slow_sites[a["slowest_site"]] = slow_sites.get(a["slowest_site"], 0) + 1
    return {
        "placement": strategy,
        "rank_hosts": rank_host,
        "ring_crossings": ring_crossings(list(range(ranks)), groups),
        "steps": steps,
        "step_ms": {"p50": round(percentile(step_ms, 50), 3), "p99": round(percentile(step_ms, 99), 3),
                    "mean": round(statistics.fmean(step_ms), 3)},
        "compute_share": round(statistics.fmean(c / s for c, s in zip(compute_ms, step_ms)), 4),
        "comm_share": round(1 - statistics.fmean(c / s for c, s in zip(compute_ms, step_ms)), 4),
        "one_site_step_ms": round(percentile(baseline_ms, 50), 3),
        "scaling_efficiency": round(percentile(baseline_ms, 50) / percentile(step_ms, 50), 4),
        "stragglers": {
            "slowest_site": max(slow_sites, key=slow_sites.get),
            "bottleneck_link": max(culprits, key=culprits.get) if culprits else None,
            "bottleneck_link_steps": culprits,
            "by_rank": _mean_waits(attributions),
        },
        "wrong": wrong,
        "bytes_by_pair": pairs,
    }


def _mean_waits(attributions: List[dict]) -> List[dict]:
    out = []
    for r, first in enumerate(attributions[0]["ranks"]):
        rows = [a["ranks"][r] for a in attributions]
        out.append({**{k: first[k] for k in ("rank", "host", "site", "gpu")},
                    "compute_ms": round(statistics.fmean(x["compute_ms"] for x in rows), 3),
                    "waited_compute_ms": round(statistics.fmean(x["waited_compute_ms"] for x in rows), 3),
                    "waited_compute_on": statistics.mode(x["waited_compute_on"] for x in rows),
                    "waited_comm_ms": round(statistics.fmean(x["waited_comm_ms"] for x in rows), 3),
                    "waited_comm_on": statistics.mode(x["waited_comm_on"] for x in rows)})
    return out


def _fabric_params(plan: dict, hosts: Sequence[str], site_of: Dict[str, str]) -> Tuple[float, float]:
    """alpha, beta inside the first site with two hosts (unshaped: the bench's assumption)."""
    by_site: Dict[str, List[str]] = {}
    for h in hosts:
        by_site.setdefault(site_of[h], []).append(h)
    for members in by_site.values():
        if len(members) > 1:
            return link_params(plan, members[0], members[1])
    return 0.0, 0.0


def run_training(lab, options: dict, progress: Callable[[str], None] = lambda _m: None) -> dict:
    """Every placement of ``options["placements"]`` on ``lab``; JSON-ready.

    ``options``: model_size_bytes, steps, warmup_steps, gpus_per_host,
    compute_ms {gpu: ms}, noise_pct, algorithm (ring | hierarchical), buckets,
    backward_share, placements, seed (see TrainingOptions in testbed.scenario).
    """
    hosts = [h.name for h in lab.hosts()]
    if len(hosts) < 2:
        raise InputError("measure.training", "needs at least two hosts")
    nodes = {h: lab.node(h) for h in hosts}
    site_of = {h: nodes[h].site or "site" for h in hosts}
    gpu_of = _gpu_of_hosts(lab)
    results = {}
    for strategy in options["placements"]:
        results[strategy] = _run_placement(lab, nodes, strategy, hosts, site_of, gpu_of, options, progress)
        if results[strategy]["wrong"]:
            raise RunError(f"training allreduce ({strategy}): {results[strategy]['wrong']} wrong elements")
    best = min(results, key=lambda s: results[s]["step_ms"]["p50"])
    return {"model_size_bytes": options["model_size_bytes"], "algorithm": options["algorithm"],
            "buckets": options["buckets"], "gpus_per_host": options["gpus_per_host"],
            "ranks": len(hosts) * options["gpus_per_host"], "scale": float(getattr(lab, "scale", 1.0)),
            "gpus": {h: gpu_of[h] for h in hosts}, "placements": results, "best_placement": best}
