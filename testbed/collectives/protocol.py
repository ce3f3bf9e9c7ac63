"""Send protocols as schedule transforms: eager (NCCL-like) and rendezvous (gloo-like).

How a message gets permission to travel is part of a collective's cost, and
two families of libraries answer differently:

* **eager** -- the receiver has buffers posted in advance and hands the
  sender credits for them, so a message leaves as soon as its data is ready
  (NCCL's proxy and socket transports; our engine and transport, which model
  NCCL_BUFFSIZE with credits). One step of a ring costs a one-way latency.
  A :class:`~testbed.collectives.schedule.Schedule` as the algorithms build
  it already *is* eager: a transfer is sent once its deps are applied.
* **rendezvous** -- the sender may only send into a buffer the receiver has
  announced (MPI's rendezvous protocol for large messages; gloo). In gloo's
  ring allreduce (``gloo/allreduce.cc``, function ``ring``) the input is cut
  into ``numSegments`` segments -- twice the number of ranks unless
  ``maxSegmentSize`` forces more, rounded up to a multiple of the number of
  ranks, so two per rank's block by default -- and both phases
  (reduce-scatter, then allgather) loop over them with two operations in
  flight: at iteration ``i`` a rank waits for the receive it posted two
  iterations earlier, reduces it, then posts the receive of segment ``i`` and
  sends its own segment ``i``. So at most two receives per peer are posted.
  gloo's tcp transport (``gloo/transport/tcp/pair.cc``) announces a posted
  receive to the peer with a "recv ready" notification, and keeps a send in
  a local pending queue until the peer's notification for it has arrived.
  Every step of the ring then waits for a notification from the next rank,
  sent when that rank got the same chunk's previous step: a round trip per
  step where eager pays one way. That is why gloo took about twice our
  eager ring over 1 ms links.

:func:`apply_protocol` writes the rendezvous protocol into the schedule
itself, so the same network engine, reference executor, race checker and
simulator run it unchanged. For every ordered pair of ranks ``(src, dst)``
that exchanges data, take its data transfers in the order ``src`` issues them
(:func:`issue_order`); data transfer number ``i`` gets a zero-byte "ready"
transfer ``token_i`` from ``dst`` to ``src`` (``src_slice = dst_slice =
(0, 0)``, op ``copy``):

* ``token_i`` depends on data ``i - window`` on that pair (``dst`` announces
  buffer ``i`` once it has applied message ``i - window``), or on nothing for
  ``i < window`` (announced at the start). gloo's ring is ``window = 2``;
* data ``i`` additionally depends on ``token_i``.

Both keep the schedule contract (a token's dep is received by the token's
sender, ``dst``; a data transfer's new dep is received by its sender). Tokens
are appended after the data transfers, ids continuing densely, and the
schedule's ``params`` record ``protocol`` and ``window``.

Issue order. Transfer ids are *a* topological order (every algorithm
creates a transfer after its deps), but not the order a sender issues them:
the chunked ring (allreduce, reduce-scatter, allgather), the hierarchical
algorithm and the double tree number transfers chunk by chunk, while a
sender issues step 0 of every chunk at once, then step 1 of every chunk, and
so on. Taking ids as the order would make chunk 1's first message wait for
chunk 0's late steps (little pipelining, not gloo). :func:`issue_order` sorts a
pair's transfers by their dependency depth (the step at which an eager
sender issues them), then by id; for the ring with two chunks per block this
is exactly gloo's segment order. Any order derived from one global
topological order -- this one and id order alike -- cannot deadlock, for any
window: put each token just before its data transfer in that order and every
dependency points forward. A deadlock needs a receiver that announces buffers
in a different order than its sender can fill them (an ``order`` passed by
hand); :func:`apply_protocol` refuses such a schedule
(:class:`~testbed.collectives.schedule.ScheduleError` naming the pair).

Cost. Message ``i`` on a pair cannot leave before message ``i - window`` on
*that pair* has arrived and the notification has come back, wherever its
chunk comes from: a round trip on the pair. With one
message per step (``window`` >= 2, one chunk) the notification is early and
rendezvous costs eager plus one latency; with gloo's two segments per block
and window 2 every step pays a round trip, ``2 S a + (S+1) m b`` for a ring
of ``S`` steps on uniform links when latency dominates (tests). Over sites,
the WAN pair pays its round trip at every step, so a topology-aware order
that lets a chunk's path cross the WAN less often saves nothing.

What this does not model: gloo also waits, at the boundary between its
reduce-scatter and allgather loops, for both last segments before posting
the first allgather receive (here the window slides across the boundary);
gloo's sender waits for its own send ``i - 2`` to complete locally, which
the token's dependency implies anyway; and gloo's tcp pair is one socket
for both directions, so a notification queues behind data that rank is
writing to the same peer. In
:func:`~testbed.collectives.simulate.simulate_time_us` a token (zero bytes)
holds no port and arrives ``alpha`` after it is ready: a notification is
one small frame that slips between data packets.

:func:`gloo_ring_params` gives the ring parameters of gloo's allreduce: rank
order, each rank's block cut into two pipelined chunks (gloo's two segments).
gloo's ring sends to ``rank - 1`` where ours sends to ``position + 1``: the
same ring reversed, which costs the same on symmetric links.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from testbed.collectives.schedule import COPY, Schedule, ScheduleError, Transfer, ready_order, topological_order
from testbed.errors import InputError

__all__ = [
    "PROTOCOLS",
    "EAGER",
    "RENDEZVOUS",
    "DEFAULT_WINDOW",
    "GLOO_SEGMENTS_PER_BLOCK",
    "apply_protocol",
    "issue_order",
    "gloo_ring_params",
]

EAGER = "eager"
RENDEZVOUS = "rendezvous"
PROTOCOLS = (EAGER, RENDEZVOUS)

#: gloo's ring allreduce keeps two receives posted per peer.
DEFAULT_WINDOW = 2

#: gloo cuts each rank's block into two segments (when maxSegmentSize allows).
GLOO_SEGMENTS_PER_BLOCK = 2

Pair = Tuple[int, int]


def _check_window(window: Any) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InputError("window", f"must be an integer >= 1, got {window!r}")
    return window


def _check_protocol(protocol: Any) -> str:
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise InputError("protocol", f"unknown protocol {protocol!r}; choose one of "
                                     f"{', '.join(PROTOCOLS)}")
    return protocol


def _issue_rank(schedule: Schedule) -> Dict[int, int]:
    """Each transfer's position in the global issue order: by dependency depth, then id."""
    transfers = schedule.transfers
    depth: Dict[int, int] = {}
    for tid in topological_order(transfers):  # ScheduleError on a cycle
        deps = transfers[tid].deps
        depth[tid] = 1 + max(depth[d] for d in deps) if deps else 0
    ranked = sorted(depth, key=lambda tid: (depth[tid], tid))
    return {tid: k for k, tid in enumerate(ranked)}


def issue_order(schedule: Schedule) -> Dict[Pair, List[int]]:
    """Per ordered pair ``(src, dst)``, its transfers' ids in the order ``src`` issues them.

    Sorted by dependency depth (0 for a transfer without deps, else one more
    than its deepest dep: the step at which an eager sender issues it), then
    by id. A global topological order, so rendezvous over it never deadlocks.
    """
    return _by_pair(schedule, _issue_rank(schedule))


def _by_pair(schedule: Schedule, rank: Dict[int, int]) -> Dict[Pair, List[int]]:
    out: Dict[Pair, List[int]] = {}
    for tid in sorted(rank, key=rank.__getitem__):
        t = schedule.transfers[tid]
        out.setdefault((t.src, t.dst), []).append(tid)
    return out


def _check_order(order: Mapping[Pair, Sequence[int]], natural: Dict[Pair, List[int]]
                 ) -> Dict[Pair, List[int]]:
    """``order`` overrides :func:`issue_order` per pair: a permutation of that pair's ids."""
    out = dict(natural)
    for pair, ids in order.items():
        try:
            key = (int(pair[0]), int(pair[1]))
            listed = [int(i) for i in ids]
        except (TypeError, ValueError, IndexError) as exc:
            raise InputError("order", f"must map (src, dst) pairs to lists of transfer ids, "
                                      f"got {pair!r}: {ids!r}") from exc
        if key not in natural:
            raise InputError("order", f"pair {key[0]}->{key[1]} carries no transfer")
        if sorted(listed) != sorted(natural[key]):
            raise InputError("order", f"pair {key[0]}->{key[1]}: must list its transfers "
                                      f"{sorted(natural[key])} exactly once, got {listed}")
        out[key] = listed
    return out


def _deadlock(transfers: List[Transfer], window: int, rank: Dict[int, int],
              gated: Dict[int, Tuple[int, Pair, int]]) -> Optional[str]:
    """None if the dependency graph is acyclic, else a description of one cycle.

    ``rank``: the data transfers' global issue order; ``gated``: token id ->
    (data id, pair, index of the data transfer in the pair's order).
    """
    order = ready_order(transfers)
    if len(order) == len(transfers):
        return None
    # every stuck transfer has a stuck dep: walk back until a transfer repeats
    stuck = set(range(len(transfers))) - set(order)
    seen: Dict[int, int] = {}
    path: List[int] = []
    tid = min(stuck)
    while tid not in seen:
        seen[tid] = len(path)
        path.append(tid)
        tid = next(d for d in transfers[tid].deps if d in stuck)
    cycle = path[seen[tid]:]
    # The input is acyclic and every other edge points forward in the issue
    # order, so the cycle holds a token announcing a message only after one
    # issued later: that pair's order is the culprit.
    backward = [t for t in cycle if t in gated and transfers[t].deps
                and rank[transfers[t].deps[0]] > rank[gated[t][0]]]
    token = min(backward or [t for t in cycle if t in gated] or cycle)
    if token not in gated:  # cannot happen: the input schedule was checked acyclic
        return f"dependency cycle through transfers {sorted(cycle)[:8]}"
    data_id, (src, dst), index = gated[token]
    return (f"rendezvous with window {window} deadlocks on pair {src}->{dst}: rank {dst} "
            f"announces message {index} (transfer {data_id}) only after applying message "
            f"{index - window} (transfer {transfers[token].deps[0]}), which cannot be sent "
            f"before it; cycle through transfers {sorted(cycle)[:8]}")


def apply_protocol(schedule: Schedule, protocol: str = EAGER, window: int = DEFAULT_WINDOW,
                   *, order: Optional[Mapping[Pair, Sequence[int]]] = None) -> Schedule:
    """``schedule`` under ``protocol`` (see the module docstring).

    ``eager`` returns ``schedule`` itself. ``rendezvous`` returns a new
    schedule with one zero-byte ready transfer per data transfer, at most
    ``window`` buffers announced ahead per pair. ``order`` (rendezvous only)
    overrides :func:`issue_order` for some pairs: the order in which that
    pair's sender issues, and its receiver announces, the transfers.

    Raises :class:`~testbed.errors.InputError` (field ``protocol``,
    ``window`` or ``order``) on bad arguments, and
    :class:`~testbed.collectives.schedule.ScheduleError` if the result would
    deadlock (a dependency cycle), naming the pair.
    """
    _check_protocol(protocol)
    _check_window(window)
    if protocol == EAGER:
        if order is not None:
            raise InputError("order", "only the rendezvous protocol takes an order")
        return schedule
    if schedule.params.get("protocol") == RENDEZVOUS:
        raise InputError("protocol", "the schedule already uses the rendezvous protocol")
    schedule.validate()  # dense ids, deps received by the sender, acyclic
    rank = _issue_rank(schedule)
    pairs = _by_pair(schedule, rank)
    if order is not None:
        pairs = _check_order(order, pairs)

    data = schedule.transfers
    first_token = len(data)
    new_deps: Dict[int, Tuple[int, ...]] = {}
    tokens: List[Transfer] = []
    gated: Dict[int, Tuple[int, Pair, int]] = {}  # token id -> (data id, pair, index)
    for (src, dst), ids in sorted(pairs.items()):
        for i, tid in enumerate(ids):
            token_id = first_token + len(tokens)
            gated[token_id] = (tid, (src, dst), i)
            tokens.append(Transfer(
                id=token_id, src=dst, dst=src, src_slice=(0, 0), dst_slice=(0, 0), op=COPY,
                deps=(ids[i - window],) if i >= window else (), local=data[tid].local))
            new_deps[tid] = tuple(sorted(data[tid].deps + (token_id,)))
    transfers = [replace(t, deps=new_deps[t.id]) for t in data] + tokens
    # issue_order's own orders cannot deadlock (module docstring): only a given one is checked
    problem = _deadlock(transfers, window, rank, gated) if order is not None else None
    if problem:
        raise ScheduleError(f"{schedule.op}/{schedule.algorithm}: {problem}")
    params = {**schedule.params, "protocol": RENDEZVOUS, "window": window}
    return replace(schedule, transfers=transfers, params=params)


def gloo_ring_params(ranks: int) -> Dict[str, Any]:
    """Ring parameters of gloo's allreduce on ``ranks`` ranks: rank order, 2 chunks per block.

    For :func:`~testbed.collectives.algorithms.build_schedule` ("ring",
    allreduce): ``nchunks`` 2 cuts the buffer into two chunks that each run
    their own ring, so every rank's share is two segments of ``count /
    (2 ranks)`` elements, sent in gloo's segment order by :func:`issue_order`
    -- gloo's ``numSegments = 2 x ranks`` when ``maxSegmentSize`` is
    unlimited. With :func:`apply_protocol` ("rendezvous", window 2) this is
    gloo's ring.
    """
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise InputError("ranks", f"must be an integer >= 1, got {ranks!r}")
    return {"order": list(range(ranks)), "nchunks": GLOO_SEGMENTS_PER_BLOCK}
