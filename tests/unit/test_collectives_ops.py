"""Operations as nccl-tests defines them: sizes, busbw factors, expected results, #wrong."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.collectives import ops
from testbed.errors import InputError


@pytest.mark.parametrize("op,n,factor", [
    ("allreduce", 8, 1.75),
    ("allreduce", 2, 1.0),
    ("reduce_scatter", 8, 0.875),
    ("allgather", 4, 0.75),
    ("alltoall", 16, 15 / 16),
    ("broadcast", 8, 1.0),
    ("reduce", 8, 1.0),
    ("sendrecv", 8, 1.0),
    ("allreduce", 1, 0.0),
])
def test_busbw_factor(op, n, factor):
    assert ops.busbw_factor(op, n) == pytest.approx(factor)


@pytest.mark.parametrize("op,count,n,size", [
    ("allreduce", 1000, 8, 4000),
    ("broadcast", 1000, 8, 4000),
    ("sendrecv", 1000, 8, 4000),
    ("allgather", 1000, 8, 32000),      # S = per-rank count * typesize * n
    ("reduce_scatter", 1000, 8, 32000),
    ("alltoall", 1000, 8, 32000),
])
def test_size_bytes(op, count, n, size):
    assert ops.size_bytes(op, count, n) == size


@pytest.mark.parametrize("op,size,n,count", [
    ("allreduce", 4 * 2**20, 8, 2**20),
    ("allreduce", 1003, 8, 250),
    ("allgather", 4 * 2**20, 8, 131072),  # (1048576 // 32) * 4
    ("allgather", 1000, 3, 80),           # (250 // 12) * 4
    ("reduce_scatter", 1000, 3, 80),
    ("alltoall", 1000, 3, 80),            # 250 // 3 = 83 -> multiple of 4 elements
    ("broadcast", 8, 8, 2),
])
def test_count_for_size_rounds_like_nccl_tests(op, size, n, count):
    assert ops.count_for_size(op, size, n) == count


def test_bandwidths():
    assert ops.algbw_gbps(4_000_000, 1000.0) == pytest.approx(4.0)
    assert ops.busbw_gbps("allreduce", 4, 4_000_000, 1000.0) == pytest.approx(6.0)
    assert ops.algbw_gbps(100, 0.0) is None


def test_unknown_op_is_an_input_error():
    with pytest.raises(InputError) as info:
        ops.busbw_factor("gather", 4)
    assert info.value.field == "op"


def _inputs(n, size):
    return [np.arange(size, dtype=np.float32) + 10 * r for r in range(n)]


def test_expected_results_by_hand():
    x = _inputs(3, 6)  # rank r: [10r, 10r+1, ...]
    assert ops.expected("allreduce", x)[1].tolist() == [30, 33, 36, 39, 42, 45]
    rs = ops.expected("reduce_scatter", x)
    assert [r.tolist() for r in rs] == [[30, 33], [36, 39], [42, 45]]
    assert ops.expected("broadcast", x, root=2)[0].tolist() == x[2].tolist()
    red = ops.expected("reduce", x, root=1)
    assert red[0] is None and red[2] is None and red[1].tolist()[0] == 30
    a2a = ops.expected("alltoall", x)  # blocks of 2: rank r gets block r of every rank
    assert a2a[1].tolist() == [2, 3, 12, 13, 22, 23]
    assert ops.expected("sendrecv", x)[0].tolist() == x[2].tolist()
    ag = ops.expected("allgather", [np.array([1.0]), np.array([2.0])])
    assert ag[0].tolist() == ag[1].tolist() == [1.0, 2.0]


def test_expected_root_out_of_range():
    with pytest.raises(InputError):
        ops.expected("broadcast", _inputs(2, 3), root=2)


def test_count_wrong():
    x = ops.make_inputs("allreduce", 4, 100, seed=1)
    want = ops.expected("allreduce", x)
    good = [w.astype(np.float32) for w in want]
    assert ops.count_wrong("allreduce", good, want) == 0
    bad = [g.copy() for g in good]
    bad[2][:5] += 0.5
    bad[3][7] = np.nan
    assert ops.count_wrong("allreduce", bad, want) == 6
    assert ops.count_wrong("allreduce", good[:3] + [None], want) == 100
    assert ops.count_wrong("allreduce", good[:3] + [good[3][:50]], want) == 100
    with pytest.raises(InputError):
        ops.count_wrong("allreduce", good[:2], want)


def test_count_wrong_tolerates_float32_rounding_only_for_sums():
    want = [np.array([1.0, 1e-3])] * 4
    rounded = [np.array([1.0 + 2e-7, 1e-3], dtype=np.float32)] * 4
    assert ops.count_wrong("allreduce", rounded, want) == 0
    assert ops.count_wrong("allreduce", [np.array([1.0001, 1e-3])] * 4, want) == 4
    assert ops.count_wrong("broadcast", rounded, want) == 4  # copies must be exact


def test_make_inputs_are_exactly_summable():
    x = ops.make_inputs("allreduce", 64, 1000, seed=2)
    assert all(v.dtype == np.float32 and v.shape == (1000,) for v in x)
    forward = np.zeros(1000, dtype=np.float32)
    for v in x:
        forward += v
    backward = np.zeros(1000, dtype=np.float32)
    for v in reversed(x):
        backward += v
    np.testing.assert_array_equal(forward, backward)
    np.testing.assert_array_equal(forward, ops.expected("allreduce", x)[0])
    assert ops.make_inputs("alltoall", 4, 10)[0].shape == (40,)


@pytest.mark.parametrize("op", list(ops.OPS))
def test_layout_round_trip_without_transfers(op):
    """With one rank, init then result is the operation's answer."""
    x = ops.make_inputs(op, 1, 5, seed=4)
    work = ops.init_work(op, 0, 1, 5, 0, x[0])
    assert work.shape == (ops.work_elems(op, 1, 5),)
    got = ops.extract_result(op, 0, 1, 5, 0, work)
    np.testing.assert_array_equal(got, ops.expected(op, x, 0)[0])


def test_init_rejects_wrong_input_size():
    with pytest.raises(InputError, match="expected 12"):
        ops.init_work("reduce_scatter", 0, 3, 4, 0, np.zeros(4))
