"""The race checker and the randomized executor catch broken schedules.

These are the checks the correctness tests rely on, shown to fail: a
schedule with a missing dependency is reported by the static check and gives
wrong answers under random interleavings; commuting reduces are not races.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from testbed.collectives import ops
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.races import find_races
from testbed.collectives.reference import execute, execute_random
from testbed.collectives.schedule import Schedule, ScheduleBuilder, ScheduleError


def _without_deps(schedule: Schedule, index: int) -> Schedule:
    transfers = list(schedule.transfers)
    transfers[index] = dataclasses.replace(transfers[index], deps=())
    return dataclasses.replace(schedule, transfers=transfers)


@pytest.mark.parametrize("algorithm,op,params", [
    ("ring", "allreduce", {}),
    ("ring", "broadcast", {}),
    ("tree", "allreduce", {}),
    ("rabenseifner", "allreduce", {}),
    ("hierarchical", "allreduce", {"groups": [[0, 1], [2, 3, 4]]}),
])
def test_dropping_any_dependency_is_caught(algorithm, op, params):
    schedule = build_schedule(op, algorithm, 5, 1003, **params)
    assert find_races(schedule) == []
    inputs = ops.make_inputs(op, 5, 1003, seed=3)
    want = ops.expected(op, inputs, 0)
    with_deps = [i for i, t in enumerate(schedule.transfers) if t.deps]
    assert with_deps
    for index in with_deps[:8]:
        broken = _without_deps(schedule, index)
        assert find_races(broken), f"transfer {index}: race not reported"
        wrong = [ops.count_wrong(op, out, want)
                 for out in execute_random(broken, inputs, runs=12, seed=index)]
        assert max(wrong) > 0, f"transfer {index}: no interleaving went wrong"


def _schedule(op: str, builder: ScheduleBuilder, ranks: int, count: int) -> Schedule:
    return builder.build(op, "hand", ranks, count)


def test_copy_racing_a_send_is_reported():
    b = ScheduleBuilder()
    b.add(0, 1, (0, 4), "copy")      # rank 1 receives ...
    b.add(1, 2, (0, 4), "copy")      # ... and forwards without waiting
    races = find_races(_schedule("broadcast", b, 3, 4))
    assert len(races) == 1 and "rank 1" in races[0]


def test_concurrent_reduces_commute_but_not_with_a_copy():
    b = ScheduleBuilder()
    b.add(1, 0, (0, 4), "reduce")
    b.add(2, 0, (0, 4), "reduce")
    assert find_races(_schedule("reduce", b, 3, 4)) == []
    b.add(3, 0, (2, 6), "copy")
    assert len(find_races(_schedule("reduce", b, 4, 6))) == 2


def test_ordered_through_a_chain_is_not_a_race():
    b = ScheduleBuilder()
    first = b.add(0, 1, (0, 4), "reduce")     # rank 0 sends its region ...
    back = b.add(1, 0, (0, 4), "copy", [first])  # ... and later gets the result back
    assert back is not None
    assert find_races(_schedule("allreduce", b, 2, 4)) == []


def test_executor_reports_a_cycle():
    schedule = build_schedule("broadcast", "ring", 3, 4)
    t0, t1 = schedule.transfers
    cyclic = dataclasses.replace(schedule, transfers=[
        dataclasses.replace(t0, deps=(1,)), dataclasses.replace(t1, deps=(0,))])
    with pytest.raises(ScheduleError):
        execute(cyclic, ops.make_inputs("broadcast", 3, 4))


def test_random_execution_splits_and_reorders_pieces():
    # a copy applied in pieces lands whole, whatever the order
    schedule = build_schedule("broadcast", "ring", 2, 1000)
    inputs = ops.make_inputs("broadcast", 2, 1000, seed=1)
    for out in execute_random(schedule, inputs, runs=5, max_pieces=7):
        np.testing.assert_array_equal(out[1], inputs[0])
