"""Collective algorithms, one module each, looked up by name in :data:`ALGORITHMS`.

Every algorithm is a function ``build(op, ranks, count, root, **params) ->
Schedule``. :func:`build_schedule` is the checked entry point: it validates
the operation, the rank count, the root and the parameter names (unknown
parameters are refused, not ignored) and raises
:class:`~testbed.errors.InputError` naming the field.

=============  =========================================  ===========================
name           operations                                 parameters
=============  =========================================  ===========================
ring           allreduce reduce_scatter allgather          order, chunk_bytes, nchunks
               broadcast reduce alltoall sendrecv
tree           allreduce broadcast reduce                 order, kind (double|binary),
                                                          chunk_bytes, nchunks
rabenseifner   allreduce                                  order
hierarchical   allreduce                                  groups, chunk_bytes, nchunks
=============  =========================================  ===========================
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

from testbed.collectives import ops
from testbed.collectives.algorithms import hierarchical, rabenseifner, ring, tree
from testbed.collectives.schedule import Schedule
from testbed.errors import InputError

__all__ = ["Algorithm", "ALGORITHMS", "build_schedule", "algorithms_for"]


@dataclass(frozen=True)
class Algorithm:
    """An algorithm: its name, the operations it implements, its builder."""

    name: str
    ops: Tuple[str, ...]
    build: Callable[..., Schedule]

    @property
    def params(self) -> Dict[str, Any]:
        """Accepted parameters and their defaults (from the builder's signature)."""
        sig = inspect.signature(self.build)
        fixed = {"op", "ranks", "count", "root"}
        return {name: p.default for name, p in sig.parameters.items() if name not in fixed}


ALGORITHMS: Dict[str, Algorithm] = {
    "ring": Algorithm("ring", ring.OPS, ring.build),
    "tree": Algorithm("tree", tree.OPS, tree.build),
    "rabenseifner": Algorithm("rabenseifner", rabenseifner.OPS, rabenseifner.build),
    "hierarchical": Algorithm("hierarchical", hierarchical.OPS, hierarchical.build),
}


def algorithms_for(op: str) -> Tuple[str, ...]:
    """Names of the algorithms implementing ``op``."""
    ops.op_spec(op)
    return tuple(name for name, algo in ALGORITHMS.items() if op in algo.ops)


def build_schedule(op: str, algorithm: str, ranks: int, count: int, root: int = 0,
                   **params: Any) -> Schedule:
    """The schedule of ``op`` by ``algorithm`` on ``ranks`` ranks, ``count`` elements.

    ``count`` is nccl-tests' parameter count (:mod:`testbed.collectives.ops`).
    """
    spec = ops.op_spec(op)
    algo = ALGORITHMS.get(algorithm)
    if algo is None:
        raise InputError("algorithm", f"unknown algorithm {algorithm!r}; choose one of "
                                      f"{', '.join(ALGORITHMS)}")
    if op not in algo.ops:
        raise InputError("algorithm", f"{algorithm} does not implement {op}; it implements "
                                      f"{', '.join(algo.ops)} (for {op}: "
                                      f"{', '.join(algorithms_for(op))})")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise InputError("ranks", f"must be an integer >= 1, got {ranks!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InputError("count", f"must be an integer >= 0, got {count!r}")
    if spec.rooted:
        if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < ranks:
            raise InputError("root", f"must be a rank in 0..{ranks - 1}, got {root!r}")
    else:
        root = 0
    accepted = algo.params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(f"algorithm.{algorithm}", f"unknown parameter(s) {', '.join(unknown)}; "
                                                   f"accepted: {', '.join(accepted)}")
    return algo.build(op, ranks, count, root, **params)
