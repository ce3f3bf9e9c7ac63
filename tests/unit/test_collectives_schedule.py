"""Schedule structure: the Transfer interface, the builder, validation, split_range."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from testbed.collectives.algorithms import build_schedule
from testbed.collectives.schedule import (
    Schedule,
    ScheduleBuilder,
    ScheduleError,
    Transfer,
    split_range,
    topological_order,
)


def test_transfer_interface_names_and_defaults():
    t = Transfer(id=0, src=1, dst=2, src_slice=(0, 4), dst_slice=(4, 8), op="copy")
    assert (t.deps, t.local) == ((), False)
    assert t.elems == 4 and t.nbytes() == 16
    assert dataclasses.replace(t, local=True).local is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.src = 3  # type: ignore[misc]
    fields = [f.name for f in dataclasses.fields(Transfer)]
    assert fields == ["id", "src", "dst", "src_slice", "dst_slice", "op", "deps", "local"]
    fields = [f.name for f in dataclasses.fields(Schedule)]
    assert fields[:6] == ["op", "algorithm", "ranks", "count", "work_elems", "transfers"]


@pytest.mark.parametrize("start,stop,parts,want", [
    (0, 10, 3, [(0, 4), (4, 7), (7, 10)]),
    (5, 7, 4, [(5, 6), (6, 7), (7, 7), (7, 7)]),
    (0, 0, 2, [(0, 0), (0, 0)]),
    (3, 9, 1, [(3, 9)]),
])
def test_split_range(start, stop, parts, want):
    assert split_range(start, stop, parts) == want


def test_builder_drops_empty_transfers_and_their_deps():
    b = ScheduleBuilder()
    assert b.add(0, 1, (3, 3), "copy") is None
    first = b.add(0, 1, (0, 2), "copy")
    second = b.add(1, 2, (0, 2), "copy", [None, first, first])
    assert (first, second) == (0, 1)
    assert b.transfers[1].deps == (0,)
    with pytest.raises(ScheduleError):
        b.add(0, 1, (0, 2), "copy", dst_region=(0, 3))


def test_schedule_init_and_result_use_the_op_layout():
    schedule = build_schedule("alltoall", "ring", 3, 2)
    assert schedule.work_elems == 12
    work = schedule.init(1, np.arange(6, dtype=np.float32))
    assert work[:6].tolist() == [0, 1, 2, 3, 4, 5]
    assert work[8:10].tolist() == [2, 3]  # own block copied at init
    assert np.isnan(work[6:8]).all() and np.isnan(work[10:]).all()
    assert schedule.result(1, work).shape == (6,)
    assert schedule.size_bytes == 3 * 2 * 4


def test_bytes_by_pair():
    schedule = build_schedule("sendrecv", "ring", 3, 10)
    assert schedule.bytes_by_pair() == {(0, 1): 40, (1, 2): 40, (2, 0): 40}
    assert schedule.bytes_sent() == 120


def _broken(schedule, index, **changes):
    transfers = list(schedule.transfers)
    transfers[index] = dataclasses.replace(transfers[index], **changes)
    return dataclasses.replace(schedule, transfers=transfers)


@pytest.mark.parametrize("changes,message", [
    ({"id": 7}, "has id"),
    ({"dst": 9}, "outside"),
    ({"dst": 0, "src": 0}, "itself"),
    ({"op": "max"}, "unknown op"),
    ({"src_slice": (0, 99)}, "outside"),
    ({"dst_slice": (0, 1)}, "different lengths"),
    ({"deps": (42,)}, "unknown dependency"),
])
def test_validate_rejects(changes, message):
    schedule = build_schedule("allreduce", "ring", 3, 9)
    schedule.validate()
    with pytest.raises(ScheduleError, match=message):
        _broken(schedule, 4, **changes).validate()


def test_validate_requires_deps_received_by_the_sender():
    schedule = build_schedule("allreduce", "ring", 3, 9)
    t = schedule.transfers[4]
    foreign = next(o for o in schedule.transfers if o.dst != t.src)
    with pytest.raises(ScheduleError, match="not by the sender"):
        _broken(schedule, 4, deps=(foreign.id,)).validate()


def test_topological_order_and_cycles():
    schedule = build_schedule("broadcast", "ring", 4, 8)
    assert topological_order(schedule.transfers) == [0, 1, 2]
    cyclic = _broken(schedule, 0, deps=(2,))
    with pytest.raises(ScheduleError, match="cycle"):
        topological_order(cyclic.transfers)
    # a cycle that respects "deps are received by the sender": 0->1 waits for 1->0
    b = ScheduleBuilder()
    b.add(0, 1, (0, 1), "copy")
    b.add(1, 0, (0, 1), "copy", [0])
    looped = b.build("allreduce", "hand", 2, 1)
    looped.transfers[0] = dataclasses.replace(looped.transfers[0], deps=(1,))
    with pytest.raises(ScheduleError, match="cycle"):
        looped.validate()


def test_placed_marks_local_transfers():
    schedule = build_schedule("allreduce", "ring", 4, 8)
    placed = schedule.placed(["h0", "h0", "h1", "h1"])
    local = {(t.src, t.dst) for t in placed.transfers if t.local}
    assert local == {(0, 1), (2, 3)}
    assert not any(t.local for t in schedule.transfers)  # the original is unchanged
    with pytest.raises(ScheduleError):
        schedule.placed(["h0"])
