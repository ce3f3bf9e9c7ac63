"""The collective operations: sizes, buffer layouts, expected results, #wrong.

Definitions follow nccl-tests (src/*.cu and doc/PERFORMANCE.md, see
../shared/FACTS.md "Collective communication"):

* ``count`` is nccl-tests' *parameter count*: elements per rank for allreduce,
  broadcast, reduce and sendrecv; the per-rank **block** for reduce_scatter
  (output), allgather (input) and alltoall (one block per peer).
* size ``S`` (the table's ``size`` column and the numerator of algbw) is
  ``count * itemsize`` for allreduce, broadcast, reduce and sendrecv, and
  ``count * itemsize * n`` for reduce_scatter, allgather and alltoall.
* busbw = algbw x factor: allreduce ``2(n-1)/n``; reduce_scatter, allgather,
  alltoall ``(n-1)/n``; broadcast, reduce, sendrecv ``1``.
* :func:`count_for_size` rounds a requested size the way nccl-tests does
  (allgather and reduce_scatter: a multiple of 4 elements per rank; alltoall:
  16 bytes per peer).

Every rank has one *work buffer* (float32). :func:`init_work` builds it from
the rank's input and :func:`extract_result` reads the rank's output from it;
all algorithms of one operation share this layout:

==============  ===========  ==============================================
op              work elems   layout
==============  ===========  ==============================================
allreduce       c            the input, reduced in place
reduce_scatter  n*c          the input; rank r's output is block r
allgather       n*c          rank r's input at block r, the rest unset (NaN)
broadcast       c            the root's input; unset (NaN) elsewhere
reduce          c            the input; the root's buffer is the output
alltoall        2*n*c        input blocks, then output blocks (own block
                             copied at init)
sendrecv        2*c          input, then output (one rank: copied at init)
==============  ===========  ==============================================

"Unset" regions are NaN, so a schedule that forgets to fill one, or adds
into one, produces wrong elements instead of plausible zeros.

:func:`make_inputs` draws values ``k/64`` with ``|k| <= 64``: every partial
sum of up to 2**18 of them is exact in float32, so reductions are exact in
any order and ``#wrong`` counts real mistakes only. :func:`count_wrong` still
allows the float32 rounding bound of a sum, for inputs from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from testbed.errors import InputError

__all__ = [
    "DTYPE",
    "ITEMSIZE",
    "DTYPE_NAME",
    "OpSpec",
    "OPS",
    "op_spec",
    "busbw_factor",
    "size_bytes",
    "count_for_size",
    "algbw_gbps",
    "busbw_gbps",
    "input_elems",
    "output_elems",
    "work_elems",
    "init_work",
    "extract_result",
    "make_inputs",
    "expected",
    "count_wrong",
]

DTYPE = np.float32
ITEMSIZE = 4
DTYPE_NAME = "float"  # as nccl-tests prints float32


@dataclass(frozen=True)
class OpSpec:
    """One collective operation as nccl-tests defines it."""

    name: str
    nccl_test: str  # the nccl-tests binary measuring it
    redop: str  # printed in the table: "sum" or "none" (as nccl-tests does)
    rooted: bool  # takes a root rank
    blocks_per_rank: bool  # S = count * itemsize * n (else count * itemsize)
    reduces: bool  # the output is a sum over ranks

    def busbw_factor(self, ranks: int) -> float:
        return busbw_factor(self.name, ranks)


OPS: Dict[str, OpSpec] = {
    "allreduce": OpSpec("allreduce", "all_reduce_perf", "sum", False, False, True),
    "reduce_scatter": OpSpec("reduce_scatter", "reduce_scatter_perf", "sum", False, True, True),
    "allgather": OpSpec("allgather", "all_gather_perf", "none", False, True, False),
    "broadcast": OpSpec("broadcast", "broadcast_perf", "none", True, False, False),
    "reduce": OpSpec("reduce", "reduce_perf", "sum", True, False, True),
    "alltoall": OpSpec("alltoall", "alltoall_perf", "none", False, True, False),
    "sendrecv": OpSpec("sendrecv", "sendrecv_perf", "sum", False, False, False),
}


def op_spec(op: str) -> OpSpec:
    """The :class:`OpSpec` of ``op``; :class:`InputError` naming the choices if unknown."""
    spec = OPS.get(op)
    if spec is None:
        raise InputError("op", f"unknown operation {op!r}; choose one of {', '.join(OPS)}")
    return spec


def _check_ranks(ranks: int) -> int:
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise InputError("ranks", f"must be an integer >= 1, got {ranks!r}")
    return ranks


def busbw_factor(op: str, ranks: int) -> float:
    """nccl-tests' bus bandwidth factor for ``op`` over ``ranks`` ranks."""
    op_spec(op)
    n = _check_ranks(ranks)
    if op == "allreduce":
        return 2.0 * (n - 1) / n
    if op in ("reduce_scatter", "allgather", "alltoall"):
        return (n - 1) / n
    return 1.0


def size_bytes(op: str, count: int, ranks: int, itemsize: int = ITEMSIZE) -> int:
    """nccl-tests' size ``S`` (the ``size`` column, algbw's numerator) of ``count``."""
    spec = op_spec(op)
    n = _check_ranks(ranks)
    return count * itemsize * (n if spec.blocks_per_rank else 1)


def count_for_size(op: str, size_bytes_: int, ranks: int, itemsize: int = ITEMSIZE) -> int:
    """The parameter count nccl-tests runs for a requested size (``-b``/``-e``).

    allreduce, broadcast, reduce, sendrecv: ``size // itemsize``;
    allgather, reduce_scatter: ``(count // (4 n)) * 4`` per rank (ALIGN 4);
    alltoall: ``count // n`` rounded down to 16 bytes per peer.
    """
    op_spec(op)
    n = _check_ranks(ranks)
    if size_bytes_ < 0:
        raise InputError("size", f"must not be negative, got {size_bytes_}")
    count = size_bytes_ // itemsize
    if op in ("allgather", "reduce_scatter"):
        return (count // (4 * n)) * 4
    if op == "alltoall":
        align = max(1, 16 // itemsize)
        return (count // n) // align * align
    return count


def algbw_gbps(size_bytes_: int, time_us: float) -> Optional[float]:
    """Algorithm bandwidth S/t in GB/s (1e9 bytes), None when the time is 0."""
    if time_us <= 0:
        return None
    return size_bytes_ / (time_us * 1e3)


def busbw_gbps(op: str, ranks: int, size_bytes_: int, time_us: float) -> Optional[float]:
    """Bus bandwidth: algbw x :func:`busbw_factor`; None when the time is 0."""
    algbw = algbw_gbps(size_bytes_, time_us)
    return None if algbw is None else algbw * busbw_factor(op, ranks)


# ---------------------------------------------------------------- layouts


def input_elems(op: str, ranks: int, count: int) -> int:
    """Elements of each rank's input."""
    op_spec(op)
    return count * ranks if op in ("reduce_scatter", "alltoall") else count


def output_elems(op: str, ranks: int, count: int) -> int:
    """Elements of each rank's output (the root's, for reduce)."""
    op_spec(op)
    return count * ranks if op in ("allgather", "alltoall") else count


def work_elems(op: str, ranks: int, count: int) -> int:
    """Size of each rank's work buffer (see the module's layout table)."""
    op_spec(op)
    if op in ("reduce_scatter", "allgather"):
        return ranks * count
    if op == "alltoall":
        return 2 * ranks * count
    if op == "sendrecv":
        return 2 * count
    return count


def init_work(op: str, rank: int, ranks: int, count: int, root: int,
              inputs: np.ndarray) -> np.ndarray:
    """Rank ``rank``'s work buffer from its input (a new float32 array)."""
    want = input_elems(op, ranks, count)
    data = np.asarray(inputs, dtype=DTYPE).reshape(-1)
    if data.size != want:
        raise InputError("inputs", f"{op} rank {rank}: input has {data.size} elements, "
                                   f"expected {want}")
    work = np.full(work_elems(op, ranks, count), np.nan, dtype=DTYPE)
    c, n = count, ranks
    if op in ("allreduce", "reduce", "reduce_scatter"):
        work[:] = data
    elif op == "allgather":
        work[rank * c:(rank + 1) * c] = data
    elif op == "broadcast":
        if rank == root:
            work[:] = data
    elif op == "alltoall":
        work[:n * c] = data
        work[n * c + rank * c:n * c + (rank + 1) * c] = data[rank * c:(rank + 1) * c]
    elif op == "sendrecv":
        work[:c] = data
        if n == 1:
            work[c:] = data
    return work


def extract_result(op: str, rank: int, ranks: int, count: int, root: int,
                   work: np.ndarray) -> Optional[np.ndarray]:
    """Rank ``rank``'s output read from its work buffer (None: reduce on a non-root)."""
    c, n = count, ranks
    if op == "reduce_scatter":
        return work[rank * c:(rank + 1) * c].copy()
    if op == "alltoall":
        return work[n * c:].copy()
    if op == "sendrecv":
        return work[c:].copy()
    if op == "reduce" and rank != root:
        return None
    return work.copy()


# ---------------------------------------------------------------- checking


def make_inputs(op: str, ranks: int, count: int, seed: int = 0) -> List[np.ndarray]:
    """Random float32 inputs ``k/64`` (``|k| <= 64``): sums of them are exact."""
    rng = np.random.default_rng(seed)
    size = input_elems(op, ranks, count)
    return [(rng.integers(-64, 65, size=size) / 64.0).astype(DTYPE) for _ in range(ranks)]


def expected(op: str, inputs: Sequence[np.ndarray], root: int = 0) -> List[Optional[np.ndarray]]:
    """Each rank's correct output (float64, summed with numpy), None where there is none."""
    spec = op_spec(op)
    n = len(inputs)
    if n < 1:
        raise InputError("inputs", "need one input per rank, got none")
    if spec.rooted and not 0 <= root < n:
        raise InputError("root", f"must be in 0..{n - 1}, got {root}")
    arrays = [np.asarray(x, dtype=np.float64).reshape(-1) for x in inputs]
    if op == "allreduce":
        total = np.sum(arrays, axis=0)
        return [total.copy() for _ in range(n)]
    if op == "reduce_scatter":
        total = np.sum(arrays, axis=0)
        c = total.size // n
        return [total[r * c:(r + 1) * c].copy() for r in range(n)]
    if op == "allgather":
        gathered = np.concatenate(arrays)
        return [gathered.copy() for _ in range(n)]
    if op == "broadcast":
        return [arrays[root].copy() for _ in range(n)]
    if op == "reduce":
        total = np.sum(arrays, axis=0)
        return [total if r == root else None for r in range(n)]
    if op == "alltoall":
        c = arrays[0].size // n
        return [np.concatenate([arrays[j][r * c:(r + 1) * c] for j in range(n)])
                for r in range(n)]
    # sendrecv: rank r sends to r+1 and receives from r-1 (nccl-tests)
    return [arrays[(r - 1) % n].copy() for r in range(n)]


def count_wrong(op: str, outputs: Sequence[Optional[np.ndarray]],
                expected_: Sequence[Optional[np.ndarray]]) -> int:
    """Number of wrong output elements over all ranks, as nccl-tests' ``#wrong``.

    Copies must be exact (to the float32 value). A sum of ``n`` float32 values may differ from the
    float64 sum by the rounding bound ``n * eps32 * sum|x|``; lacking the
    inputs, ``sum|x|`` is taken as ``n * max|expected|`` (at least 1). A
    missing output, or one of the wrong length, counts all its elements.
    """
    spec = op_spec(op)
    n = len(expected_)
    if len(outputs) != n:
        raise InputError("outputs", f"{len(outputs)} outputs for {n} ranks")
    scale = max([float(np.max(np.abs(e))) for e in expected_ if e is not None and e.size]
                + [1.0])
    # + 1: the float64 answer itself rounds to float32
    tol = (n * n + 1) * float(np.finfo(np.float32).eps) * scale if spec.reduces else 0.0
    wrong = 0
    for out, exp in zip(outputs, expected_):
        if exp is None:
            continue
        if out is None or np.asarray(out).size != exp.size:
            wrong += exp.size
            continue
        got = np.asarray(out, dtype=np.float64).reshape(-1)
        want = exp if spec.reduces else exp.astype(DTYPE).astype(np.float64)
        bad = ~(np.abs(got - want) <= tol)  # NaN counts as wrong
        wrong += int(np.count_nonzero(bad))
    return wrong
