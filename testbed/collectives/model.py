"""Alpha-beta cost models of the collective algorithms (closed forms).

``p`` ranks, ``n`` bytes (nccl-tests' size S of the operation), ``a`` the
per-message latency in microseconds, ``b`` microseconds per byte (1/bandwidth
of the bottleneck). Sources (FACTS.md): Thakur, Rabenseifner & Gropp 2005;
Patarasuk & Yuan 2009.

=====================================  ==========================================
algorithm                              time
=====================================  ==========================================
ring allreduce                         ``2(p-1)a + 2((p-1)/p) n b``
ring allgather, reduce-scatter         ``(p-1)a + ((p-1)/p) n b``
Rabenseifner allreduce (p = 2^k)       ``2 lg p a + 2((p-1)/p) n b``
recursive-doubling allreduce           ``lg p (a + n b)``
binomial-tree broadcast                ``lg p (a + n b)``
chain broadcast / reduce (ring)        ``(p-1)(a + n b)``
pairwise alltoall                      ``(p-1)(a + (n/p) b)``
sendrecv                               ``a + n b``
hierarchical allreduce (a per site,    ``2(a-1)aL + 2((a-1)/a)n bL``
s sites)                               ``+ 2(s-1)aW + 2((s-1)/s)(n/a) bW``
=====================================  ==========================================

Chunk pipelining (``K`` chunks, as the schedules cut them). ``a`` is a
latency: it does not occupy a port, so chunks in flight hide it. A ring phase
of ``S`` steps (``S = 2(p-1)`` for allreduce, ``p-1`` for one phase) with
messages of ``m = n/(pK)`` bytes takes::

    max( S(a + m b) + (K-1) m b ,   S K m b + a )

the first term when latency dominates (chunk 0 goes around, the rest follow),
the second when the link is never idle. ``K = 1`` gives the textbook
formula. A chain (ring broadcast/reduce) takes ``(p-1)(a + m b) + (K-1) m b``
with ``m = n/K``. These are exactly what :mod:`testbed.collectives.simulate`
computes for our ring, chain, alltoall and Rabenseifner schedules (tests).

Ring over several links: edge ``i`` goes from ``order[i]`` to
``order[i+1]`` with its own ``a_i``, ``b_i`` (:func:`ring_edge_params`;
edges crossing from one site to another in the same direction share that WAN
link, so each sees ``b`` times their number). Our ring is not lockstep: a
message goes as soon as its chunk has arrived, and a chunk's step ``s`` on
edge ``i`` is followed by its step ``s+1`` on edge ``i+1``, so chunk 0 pays
the WAN latency only where its path crosses the WAN: 4 of the 14 steps of an
allreduce over 8 ranks in two sites of 4 (topology-aware order), not at every
step. With ``h_i = a_i + m b_i`` a phase takes (:func:`ring_edges_phase_us`)
the largest over edges ``e`` and steps ``s0 <= s1 < S`` of::

    sum_{j=1..s0} h_{e-j} + (s1-s0+1) K m b_e + a_e + sum_{j=1..S-1-s1} h_{e+j}

(indices mod ``p``): edge ``e`` sends steps ``s0..s1`` of all ``K`` chunks
one after another, the first not before chunk 0 has come ``s0`` edges, the
last with ``S-1-s1`` edges still to go. ``s0 = s1`` at a path's slowest edge
is the chain term (the slowest ``S`` consecutive edges, ``(K-1) m b`` of
that path's slowest edge), ``s0 = 0, s1 = S-1`` the port term (the busiest
edge, ``S K m b_e + a_e``); the terms between count a slow edge's queue of
earlier steps fed by fast edges. Uniform edges give the formula above. A
chain (:func:`chain_edges_us`) takes ``sum_j h_j + (K-1) m max_j b_j`` over
its ``p-1`` edges from the root, ``m = n/K``. When every edge has a link of
its own, each term is a lower bound of the port model and the tests find
:mod:`testbed.collectives.simulate` equal to the largest (uneven splits
aside). Where ``c > 1`` edges share a WAN link the closed form charges every
crossing message ``c b`` (all ``c`` in flight, sharing fairly) while the
simulator sends them one at a time at ``b``: the closed form can then be above
the simulator (1.5x for 8 ranks interleaved over two sites, more for chains,
where a chunk crosses alone).
:func:`ring_link_params` is the worst edge alone, what a lockstep ring would
wait for at every step. The hierarchical algorithm pays the WAN latency
``2(s-1)`` times.

Trees (ours: in-order binary trees of depth ``d = floor(lg p)``, see
:mod:`testbed.collectives.algorithms.tree`), ``K`` chunks of ``m`` bytes per
tree: filling the pipeline costs ``a + 2 m b`` per level (a node feeds two
children, or is fed by two), and each further chunk the busiest port's load.
Binary tree, ``m = n/K``: allreduce ``2d(a + 2mb) + (K-1) 3mb``; broadcast
and reduce ``d(a + 2mb) + (K-1) 2mb``. Double binary tree, ``m = n/(2K)``:
allreduce ``2d(a + 2mb) + (K-1) 4mb`` (``-> 2nb``, ring-like, for large K);
broadcast and reduce ``(d+1)(a + 2mb) + (K-1) 3mb`` (one more hop to the
second tree's root). For trees this is an approximation (exact for perfect
trees with ``K = 1``); the simulator gives the port model's value.

Hierarchical: the closed form sums the three phases (no pipelining across
chunks, so an upper bound for chunked runs). ``bW`` is per rank; when the
ranks of a site share one WAN link (``shared_wan_link``, the default) the
WAN bandwidth term is ``a`` times larger: ``2((s-1)/s) n bW``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from testbed.collectives import ops
from testbed.collectives.algorithms import ALGORITHMS
from testbed.collectives.algorithms._common import check_order, chunk_count
from testbed.collectives.order import crossings_by_direction, site_of
from testbed.errors import InputError

__all__ = [
    "alpha_beta_from_links",
    "window_limited_beta",
    "ring_phase_us",
    "ring_edges_phase_us",
    "chain_edges_us",
    "ring_allreduce_us",
    "ring_allgather_us",
    "ring_reduce_scatter_us",
    "chain_us",
    "pairwise_alltoall_us",
    "sendrecv_us",
    "rabenseifner_allreduce_us",
    "recursive_doubling_allreduce_us",
    "binomial_broadcast_us",
    "tree_allreduce_us",
    "tree_broadcast_us",
    "hierarchical_allreduce_us",
    "ring_link_params",
    "ring_edge_params",
    "model_time_us",
]


def alpha_beta_from_links(path_latency_ms: float, bottleneck_rate_bps: float,
                          overhead_us: float = 0.0) -> Tuple[float, float]:
    """(alpha_us, beta_us_per_byte) from a path's one-way latency and bottleneck rate.

    ``path_latency_ms`` is one-way (half the RTT); ``overhead_us`` adds a
    per-message software cost if known.
    """
    if bottleneck_rate_bps <= 0:
        raise InputError("rate", f"bottleneck rate must be > 0 bit/s, got {bottleneck_rate_bps}")
    if path_latency_ms < 0:
        raise InputError("delay", f"path latency must be >= 0 ms, got {path_latency_ms}")
    return path_latency_ms * 1000.0 + overhead_us, 8e6 / bottleneck_rate_bps


def window_limited_beta(beta_us_per_byte: float, rtt_ms: float, window_bytes: int,
                        connections: int = 1) -> float:
    """Per-byte time once a bounded in-flight window is counted (FACTS.md).

    A connection with at most ``window_bytes`` unacknowledged carries at most
    ``window_bytes / RTT`` (NCCL_BUFFSIZE per connection; 4 MiB over 80 ms is
    about 0.42 Gbit/s); ``connections`` of them in parallel add up. The
    slower of that and the link is what a message sees.
    """
    if window_bytes <= 0 or connections < 1:
        raise InputError("buffsize", f"window must be > 0 bytes on >= 1 connection, got "
                                     f"{window_bytes} x {connections}")
    return max(beta_us_per_byte, rtt_ms * 1000.0 / (window_bytes * connections))


def ring_phase_us(steps: int, p: int, n: float, a: float, b: float, nchunks: int = 1) -> float:
    """``steps`` ring steps over ``n`` bytes cut into ``p`` segments and ``nchunks`` chunks."""
    if steps <= 0:
        return 0.0
    k = max(1, nchunks)
    m = n / (p * k)
    return max(steps * (a + m * b) + (k - 1) * m * b, steps * k * m * b + a)


Edge = Tuple[float, float]


def ring_edges_phase_us(steps: int, n: float, edges: Sequence[Edge], nchunks: int = 1) -> float:
    """``steps`` ring steps over per-edge ``edges`` (alpha_us, beta_us_per_byte) in ring order.

    Edge ``i`` carries position ``i``'s messages to position ``i+1``: a
    chunk's step ``s`` on edge ``i`` is followed by its step ``s+1`` on edge
    ``i+1``. ``p = len(edges)``, ``m = n/(pK)``, ``h_i = a_i + m b_i``. The
    largest, over edges ``e`` and steps ``s0 <= s1 < steps``, of::

        sum_{j=1..s0} h_{e-j} + (s1-s0+1) K m b_e + a_e + sum_{j=1..steps-1-s1} h_{e+j}

    (indices mod p): edge ``e`` serves steps ``s0..s1`` of all ``K`` chunks
    one message at a time, the first not before chunk 0 has come ``s0`` edges
    to it, and the last still has ``steps-1-s1`` edges to go. ``s0 = s1`` at
    the slowest edge of a path is the chain term (the slowest ``steps``
    consecutive edges plus ``(K-1) m b`` of that path's slowest edge);
    ``s0 = 0, s1 = steps-1`` the port term ``steps K m b_e + a_e``. Uniform
    edges give :func:`ring_phase_us`.
    """
    p = len(edges)
    if steps <= 0 or p == 0:
        return 0.0
    k = max(1, nchunks)
    m = n / (p * k)
    hop = [a + m * b for a, b in edges]
    best = 0.0
    for e, (a_e, b_e) in enumerate(edges):
        w = k * m * b_e  # one step of all K chunks on edge e
        before = [0.0] * steps  # sum_{j=1..s} h_{e-j}
        for s in range(1, steps):
            before[s] = before[s - 1] + hop[(e - s) % p]
        after = [0.0] * steps  # a_e + sum_{j=1..steps-1-s} h_{e+j}
        after[steps - 1] = a_e
        for s in range(steps - 2, -1, -1):
            after[s] = after[s + 1] + hop[(e + steps - 1 - s) % p]
        lead = -math.inf  # max over s0 <= s of before[s0] - s0 w
        for s in range(steps):
            lead = max(lead, before[s] - s * w)
            best = max(best, lead + (s + 1) * w + after[s])
    return best


def chain_edges_us(n: float, edges: Sequence[Edge], nchunks: int = 1,
                   root_position: int = 0) -> float:
    """Pipelined chain over a ring's ``edges`` from position ``root_position`` (p-1 hops).

    ``sum_j (a_j + m b_j) + (K-1) m max_j b_j`` over the hops
    ``root_position, root_position+1, ...`` (mod p), ``m = n/K``: broadcast's
    path; reduce runs the same hops backwards (same sum). Uniform edges give
    :func:`chain_us`.
    """
    p = len(edges)
    if p <= 1:
        return 0.0
    k = max(1, nchunks)
    m = n / k
    hops = [edges[(root_position + j) % p] for j in range(p - 1)]
    return sum(a + m * b for a, b in hops) + (k - 1) * m * max(b for _, b in hops)


def ring_allreduce_us(p: int, n: float, a: float, b: float, nchunks: int = 1) -> float:
    """Ring allreduce: ``2(p-1)a + 2((p-1)/p) n b`` for one chunk."""
    return ring_phase_us(2 * (p - 1), p, n, a, b, nchunks)


def ring_allgather_us(p: int, n: float, a: float, b: float, nchunks: int = 1) -> float:
    """Ring allgather of ``n`` bytes in total: ``(p-1)a + ((p-1)/p) n b`` for one chunk."""
    return ring_phase_us(p - 1, p, n, a, b, nchunks)


ring_reduce_scatter_us = ring_allgather_us


def chain_us(p: int, n: float, a: float, b: float, nchunks: int = 1) -> float:
    """Pipelined chain (ring broadcast or reduce): ``(p-1)(a + m b) + (K-1) m b``, m = n/K."""
    if p <= 1:
        return 0.0
    k = max(1, nchunks)
    m = n / k
    return (p - 1) * (a + m * b) + (k - 1) * m * b


def pairwise_alltoall_us(p: int, n: float, a: float, b: float) -> float:
    """Pairwise-exchange alltoall of ``n`` bytes per rank: ``(p-1)(a + (n/p) b)``."""
    return (p - 1) * (a + n / p * b) if p > 1 else 0.0


def sendrecv_us(p: int, n: float, a: float, b: float) -> float:
    """One message of ``n`` bytes: ``a + n b`` (0 on one rank)."""
    return a + n * b if p > 1 else 0.0


def rabenseifner_allreduce_us(p: int, n: float, a: float, b: float) -> float:
    """``2 lg p2 a + 2((p2-1)/p2) n b``, plus ``2(a + n b)`` to fold ranks beyond p2 = 2^k <= p."""
    if p <= 1:
        return 0.0
    p2 = 1 << (p.bit_length() - 1)
    lg = p2.bit_length() - 1
    fold = 2 * (a + n * b) if p2 != p else 0.0
    return 2 * lg * a + 2 * (p2 - 1) / p2 * n * b + fold


def recursive_doubling_allreduce_us(p: int, n: float, a: float, b: float) -> float:
    """``lg p (a + n b)`` (formula only; lg rounded up)."""
    return math.ceil(math.log2(p)) * (a + n * b) if p > 1 else 0.0


def binomial_broadcast_us(p: int, n: float, a: float, b: float) -> float:
    """``lg p (a + n b)`` (formula only; lg rounded up)."""
    return math.ceil(math.log2(p)) * (a + n * b) if p > 1 else 0.0


def _tree_depth(p: int) -> int:
    return p.bit_length() - 1


def tree_allreduce_us(p: int, n: float, a: float, b: float, kind: str = "double",
                      nchunks: int = 1) -> float:
    """Pipelined tree allreduce (module docstring), ``nchunks`` chunks per tree."""
    if p <= 1:
        return 0.0
    d, k = _tree_depth(p), max(1, nchunks)
    if kind == "binary":
        m = n / k
        return 2 * d * (a + 2 * m * b) + (k - 1) * 3 * m * b
    m = n / (2 * k)
    return 2 * d * (a + 2 * m * b) + (k - 1) * 4 * m * b


def tree_broadcast_us(p: int, n: float, a: float, b: float, kind: str = "double",
                      nchunks: int = 1) -> float:
    """Pipelined tree broadcast or reduce (module docstring)."""
    if p <= 1:
        return 0.0
    d, k = _tree_depth(p), max(1, nchunks)
    if kind == "binary":
        m = n / k
        return d * (a + 2 * m * b) + (k - 1) * 2 * m * b
    m = n / (2 * k)
    return (d + 1) * (a + 2 * m * b) + (k - 1) * 3 * m * b


def hierarchical_allreduce_us(group_sizes: Sequence[int], n: float, a_local: float,
                              b_local: float, a_wan: float, b_wan: float,
                              shared_wan_link: bool = True) -> float:
    """Hierarchical allreduce over sites of ``group_sizes`` ranks (FACTS.md formula).

    Equal sites of ``A`` ranks, ``S`` sites: ``2(A-1)aL + 2((A-1)/A) n bL +
    2(S-1)aW + 2((S-1)/S)(n/A) bW``, the last term times ``A`` when a site's
    ranks share its WAN link. Unequal sites: the largest site sets the local
    terms, the smallest (largest shard) the WAN term.
    """
    sizes = [int(x) for x in group_sizes]
    if not sizes or min(sizes) < 1:
        raise InputError("groups", f"need at least one non-empty site, got {sizes}")
    s, a_max, a_min = len(sizes), max(sizes), min(sizes)
    local = 2 * (a_max - 1) * a_local + 2 * (a_max - 1) / a_max * n * b_local
    if s == 1:
        return local
    shard = n if shared_wan_link else n / a_min
    return local + 2 * (s - 1) * a_wan + 2 * (s - 1) / s * shard * b_wan


def ring_edge_params(order: Sequence[int], groups: Sequence[Sequence[int]],
                     local: Edge, wan: Edge, shared_wan_link: bool = True,
                     wan_floor_beta: float = 0.0) -> List[Edge]:
    """(alpha_us, beta_us_per_byte) per ring edge, edge ``i`` from ``order[i]`` to ``order[i+1]``.

    ``local`` and ``wan`` are (alpha_us, beta_us_per_byte). With
    ``shared_wan_link``, the ``c`` ring edges that cross from one site to
    another in the same direction share that WAN link: each sees ``c * bW``.
    ``wan_floor_beta`` is what an edge's own connections allow (the TCP bound,
    :mod:`testbed.collectives.tcpedges`): a crossing edge sees
    ``max(c * bW, wan_floor_beta)``. Empty for fewer than two ranks.
    """
    p = len(order)
    if p < 2:
        return []
    crossings = crossings_by_direction(order, groups)
    where = site_of(groups)
    out: List[Edge] = []
    for i, rank in enumerate(order):
        a_site, b_site = where[rank], where[order[(i + 1) % p]]
        if a_site == b_site:
            out.append((float(local[0]), float(local[1])))
        else:
            sharing = crossings[(a_site, b_site)] if shared_wan_link else 1
            out.append((float(wan[0]), max(float(wan[1]) * sharing, float(wan_floor_beta))))
    return out


def ring_link_params(order: Sequence[int], groups: Sequence[Sequence[int]],
                     local: Edge, wan: Edge, shared_wan_link: bool = True) -> Edge:
    """(alpha_us, beta_us_per_byte) of a ring's slowest edge over sites.

    The largest alpha and the largest beta of :func:`ring_edge_params`
    (``local`` for fewer than two ranks): what a lockstep ring, or an
    alltoall over the ring's links, waits for at every step.
    """
    edges = ring_edge_params(order, groups, local, wan, shared_wan_link)
    return _worst_edge(edges) if edges else local


def _worst_edge(edges: Sequence[Edge]) -> Edge:
    """The largest alpha and the largest beta over ``edges``."""
    return max(a for a, _ in edges), max(b for _, b in edges)


def _check_edges(edges: Any, p: int) -> List[Edge]:
    try:
        out = [(float(a), float(b)) for a, b in edges]
    except (TypeError, ValueError) as exc:
        raise InputError("edges", f"must be (alpha_us, beta_us_per_byte) pairs, "
                                  f"got {edges!r}") from exc
    if len(out) != p or any(a < 0 or b < 0 for a, b in out):
        raise InputError("edges", f"need {p} pairs of non-negative (alpha_us, beta_us_per_byte), "
                                  f"got {out}")
    return out


_MODEL_PARAMS: Dict[str, Tuple[str, ...]] = {
    "ring": ("order", "chunk_bytes", "nchunks", "edges"),
    "tree": ("order", "kind", "chunk_bytes", "nchunks"),
    "rabenseifner": ("order",),
    "hierarchical": ("groups", "chunk_bytes", "nchunks", "alpha_wan_us",
                     "beta_wan_us_per_byte", "shared_wan_link"),
}


def model_time_us(op: str, algorithm: str, ranks: int, size_bytes: int, alpha_us: float,
                  beta_us_per_byte: float, **algo_params: Any) -> float:
    """Modelled time (us) of ``op`` by ``algorithm`` for nccl-tests size ``size_bytes``.

    ``algo_params`` are the schedule's own (``nchunks``/``chunk_bytes`` set K
    as the schedule does; ``order``/``groups`` are accepted so the same dict
    can be passed). Hierarchical: ``alpha_us``/``beta_us_per_byte`` are the
    intra-site link's, ``alpha_wan_us``/``beta_wan_us_per_byte`` (default: the
    same) the inter-site link's, ``shared_wan_link`` (default True).
    Ring over several links: ``edges``, one (alpha_us, beta_us_per_byte) per
    ring edge in ``order`` (:func:`ring_edge_params`), replaces
    ``alpha_us``/``beta_us_per_byte``: allreduce, reduce_scatter and
    allgather use :func:`ring_edges_phase_us`, broadcast and reduce
    :func:`chain_edges_us` from rank 0 (the root the schedules are run
    with), alltoall and sendrecv the worst edge (largest alpha, largest beta).
    """
    spec = ops.op_spec(op)
    algo = ALGORITHMS.get(algorithm)
    if algo is None or op not in algo.ops:
        raise InputError("algorithm", f"no model for {op} by {algorithm!r}")
    unknown = sorted(set(algo_params) - set(_MODEL_PARAMS[algorithm]))
    if unknown:
        raise InputError(f"algorithm.{algorithm}", f"unknown parameter(s) {', '.join(unknown)}")
    p, n, a, b = ranks, float(size_bytes), alpha_us, beta_us_per_byte
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise InputError("ranks", f"must be an integer >= 1, got {p!r}")
    if p == 1:
        return 0.0
    chunk_bytes = algo_params.get("chunk_bytes")
    nchunks: Optional[int] = algo_params.get("nchunks")
    count = size_bytes // ops.ITEMSIZE
    block = count // p if spec.blocks_per_rank else count

    if algorithm == "ring":
        edges = algo_params.get("edges")
        if edges is not None:
            edges = _check_edges(edges, p)
            root_position = check_order(algo_params.get("order"), p).index(0)
            a, b = _worst_edge(edges)
        if op == "allreduce":
            k = chunk_count(count, p, chunk_bytes, nchunks)
            if edges is not None:
                return ring_edges_phase_us(2 * (p - 1), n, edges, k)
            return ring_allreduce_us(p, n, a, b, k)
        if op in ("reduce_scatter", "allgather"):
            k = chunk_count(block, 1, chunk_bytes, nchunks)
            if edges is not None:
                return ring_edges_phase_us(p - 1, n, edges, k)
            return ring_allgather_us(p, n, a, b, k)
        if op in ("broadcast", "reduce"):
            k = chunk_count(count, 1, chunk_bytes, nchunks)
            if edges is not None:
                return chain_edges_us(n, edges, k, root_position)
            return chain_us(p, n, a, b, k)
        if op == "alltoall":
            return pairwise_alltoall_us(p, n, a, b)
        return sendrecv_us(p, n, a, b)
    if algorithm == "tree":
        kind = algo_params.get("kind", "double")
        if kind not in ("double", "binary"):
            raise InputError("kind", f"tree kind must be double or binary, got {kind!r}")
        per_tree = count // 2 if kind == "double" else count
        k = chunk_count(per_tree, 1, chunk_bytes, nchunks)
        if op == "allreduce":
            return tree_allreduce_us(p, n, a, b, kind, k)
        return tree_broadcast_us(p, n, a, b, kind, k)
    if algorithm == "rabenseifner":
        return rabenseifner_allreduce_us(p, n, a, b)
    groups = algo_params.get("groups") or [list(range(p))]
    return hierarchical_allreduce_us(
        [len(g) for g in groups], n, a, b,
        float(algo_params.get("alpha_wan_us", a)),
        float(algo_params.get("beta_wan_us_per_byte", b)),
        bool(algo_params.get("shared_wan_link", True)))
