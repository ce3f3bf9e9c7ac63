"""Collective communication (allreduce and friends) between emulated GPU hosts.

The pure parts, usable without root or a network:

* :mod:`~testbed.collectives.ops` -- the operations as nccl-tests defines
  them (count, size, busbw factor, buffer layout, expected result, #wrong);
* :mod:`~testbed.collectives.schedule` -- a collective as a list of
  :class:`Transfer` with dependencies (:class:`Schedule`), and the invariant
  every executor may rely on;
* :mod:`~testbed.collectives.algorithms` -- ring, tree (binary and double
  binary), Rabenseifner, hierarchical; looked up by name in
  :data:`ALGORITHMS`, built with :func:`build_schedule`;
* :mod:`~testbed.collectives.order` -- topology-aware and naive ring orders;
* :mod:`~testbed.collectives.reference` -- an in-memory executor (the
  correctness oracle), :mod:`~testbed.collectives.races` -- a static check of
  a schedule's ordering;
* :mod:`~testbed.collectives.model` -- alpha-beta models;
  :mod:`~testbed.collectives.simulate` -- a schedule timed in that model;
* :mod:`~testbed.collectives.table` -- nccl-tests-style rows and sweeps.

The network engine (``engine``, ``transport``) runs schedules over real
sockets in lab namespaces and is imported from its own modules.
"""

from __future__ import annotations

from testbed.collectives.algorithms import ALGORITHMS, Algorithm, algorithms_for, build_schedule
from testbed.collectives.model import alpha_beta_from_links, model_time_us, ring_link_params
from testbed.collectives.ops import (
    OPS,
    busbw_factor,
    count_for_size,
    count_wrong,
    expected,
    make_inputs,
)
from testbed.collectives.order import (
    groups_from_labels,
    interleaved_order,
    naive_order,
    ring_crossings,
    topology_aware_order,
)
from testbed.collectives.races import find_races
from testbed.collectives.reference import execute, execute_random, run_collective
from testbed.collectives.schedule import Schedule, ScheduleError, Transfer
from testbed.collectives.simulate import simulate_time_us
from testbed.collectives.table import format_table, parse_size, row_dict, size_sweep

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "algorithms_for",
    "build_schedule",
    "OPS",
    "busbw_factor",
    "count_for_size",
    "count_wrong",
    "expected",
    "make_inputs",
    "Schedule",
    "ScheduleError",
    "Transfer",
    "execute",
    "execute_random",
    "run_collective",
    "find_races",
    "alpha_beta_from_links",
    "model_time_us",
    "ring_link_params",
    "simulate_time_us",
    "naive_order",
    "topology_aware_order",
    "interleaved_order",
    "groups_from_labels",
    "ring_crossings",
    "format_table",
    "parse_size",
    "row_dict",
    "size_sweep",
]
