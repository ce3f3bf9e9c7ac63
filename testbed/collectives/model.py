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

Ring over several links: every step waits for the slowest link, so a ring's
``a`` and ``b`` are those of its worst edge; edges crossing sites that share
one WAN link divide its bandwidth (:func:`ring_link_params`). This is why a
flat ring over two sites pays the WAN latency at each of its ``2(p-1)``
steps while the hierarchical algorithm pays it ``2(s-1)`` times.

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
from typing import Any, Dict, Optional, Sequence, Tuple

from testbed.collectives import ops
from testbed.collectives.algorithms import ALGORITHMS
from testbed.collectives.algorithms._common import chunk_count
from testbed.collectives.order import crossings_by_direction, site_of
from testbed.errors import InputError

__all__ = [
    "alpha_beta_from_links",
    "window_limited_beta",
    "ring_phase_us",
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


def ring_link_params(order: Sequence[int], groups: Sequence[Sequence[int]],
                     local: Tuple[float, float], wan: Tuple[float, float],
                     shared_wan_link: bool = True) -> Tuple[float, float]:
    """(alpha_us, beta_us_per_byte) of a ring's slowest edge over sites.

    ``local`` and ``wan`` are (alpha_us, beta_us_per_byte). With
    ``shared_wan_link``, the ``c`` ring edges that cross from one site to
    another in the same direction share that WAN link: each sees ``c * bW``.
    """
    if len(order) < 2:
        return local
    crossings = crossings_by_direction(order, groups)
    where = site_of(groups)
    alpha, beta = 0.0, 0.0
    for i, rank in enumerate(order):
        a_site, b_site = where[rank], where[order[(i + 1) % len(order)]]
        if a_site == b_site:
            edge = local
        else:
            sharing = crossings[(a_site, b_site)] if shared_wan_link else 1
            edge = (wan[0], wan[1] * sharing)
        alpha, beta = max(alpha, edge[0]), max(beta, edge[1])
    return alpha, beta


_MODEL_PARAMS: Dict[str, Tuple[str, ...]] = {
    "ring": ("order", "chunk_bytes", "nchunks"),
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
    For a flat ring over sites pass :func:`ring_link_params`'s values.
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
        if op == "allreduce":
            return ring_allreduce_us(p, n, a, b, chunk_count(count, p, chunk_bytes, nchunks))
        if op in ("reduce_scatter", "allgather"):
            return ring_allgather_us(p, n, a, b, chunk_count(block, 1, chunk_bytes, nchunks))
        if op in ("broadcast", "reduce"):
            return chain_us(p, n, a, b, chunk_count(count, 1, chunk_bytes, nchunks))
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
