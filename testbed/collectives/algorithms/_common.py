"""Parameter checks shared by the algorithms: rank orders and chunk counts."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

from testbed.collectives.ops import ITEMSIZE
from testbed.collectives.schedule import Region, split_range
from testbed.errors import InputError

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "check_order",
    "rotate_to",
    "chunk_count",
    "chunks",
]

#: One NCCL step at the default NCCL_BUFFSIZE (4 MiB / NCCL_STEPS 8 = 512 KiB,
#: ../shared/FACTS.md): the default size of one pipelined message.
DEFAULT_CHUNK_BYTES = 512 * 1024


def check_order(order: Optional[Sequence[int]], ranks: int, field: str = "order") -> List[int]:
    """``order`` as a list if it is a permutation of 0..ranks-1; identity when None."""
    if order is None:
        return list(range(ranks))
    try:
        out = [int(r) for r in order]
    except (TypeError, ValueError) as exc:
        raise InputError(field, f"must be a list of ranks, got {order!r}") from exc
    if sorted(out) != list(range(ranks)):
        raise InputError(field, f"must list every rank 0..{ranks - 1} exactly once, got {out}")
    return out


def rotate_to(order: List[int], rank: int, position: int = 0) -> List[int]:
    """``order`` rotated so that ``rank`` sits at ``position`` (ring/tree roots)."""
    shift = (order.index(rank) - position) % len(order)
    return order[shift:] + order[:shift]


def chunk_count(total_elems: int, messages_per_chunk: int, chunk_bytes: Optional[int],
                nchunks: Optional[int], itemsize: int = ITEMSIZE) -> int:
    """How many pipelined chunks to cut ``total_elems`` elements into.

    ``nchunks`` wins when given; otherwise enough chunks that one message (a
    chunk divided into ``messages_per_chunk`` parts, e.g. the ring's segments)
    is at most ``chunk_bytes``. Never more chunks than elements, never fewer
    than one.
    """
    if nchunks is not None:
        if isinstance(nchunks, bool) or not isinstance(nchunks, int) or nchunks < 1:
            raise InputError("nchunks", f"must be an integer >= 1, got {nchunks!r}")
        want = nchunks
    else:
        size = DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < itemsize:
            raise InputError("chunk_bytes", f"must be an integer >= {itemsize}, got {size!r}")
        want = math.ceil(total_elems * itemsize / (messages_per_chunk * size))
    return max(1, min(want, total_elems))


def chunks(region: Region, parts: int) -> List[Region]:
    """``region`` cut into ``parts`` pipelined chunks (uneven allowed)."""
    return split_range(region[0], region[1], parts)
