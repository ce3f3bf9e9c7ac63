"""nccl-tests-style rows, JSON rows, size parsing and sweeps."""

from __future__ import annotations

import json

import pytest

from testbed.collectives import table
from testbed.errors import InputError


def test_row_dict_values_and_json():
    # allreduce, 8 ranks, 1 MiB: algbw = 1048576 B / 1000 us = 1.048576 GB/s, busbw x 7/4
    row = table.row_dict("allreduce", "ring", 8, 262144, 1000.0, 0, model_time_us=800.0)
    assert row["bytes"] == 1048576
    assert row["algbw_gbps"] == pytest.approx(1.048576)
    assert row["busbw_gbps"] == pytest.approx(1.048576 * 1.75)
    assert row["meas_over_model"] == pytest.approx(1.25)
    assert (row["redop"], row["root"], row["type"], row["correct"]) == ("sum", -1, "float", True)
    results_keys = {"op", "algorithm", "ranks", "bytes", "time_us", "algbw_gbps", "busbw_gbps",
                    "model_time_us", "correct"}
    assert results_keys <= set(row)
    json.dumps(row, allow_nan=False)


def test_row_dict_sizes_follow_the_op():
    row = table.row_dict("allgather", "ring", 4, 1000, 10.0, 3, root=2)
    assert row["bytes"] == 16000 and row["root"] == -1 and row["redop"] == "none"
    assert row["correct"] is False
    row = table.row_dict("broadcast", "tree", 4, 1000, 0.0, None, root=2)
    assert row["root"] == 2 and row["algbw_gbps"] is None and row["correct"] is None
    json.dumps(row, allow_nan=False)


@pytest.mark.parametrize("time_us,text", [
    (12.345, "  12.35"), (123.45, "  123.5"), (12345.6, "  12346"), (None, "    N/A")])
def test_time_format_like_nccl_tests(time_us, text):
    assert table.format_time_us(time_us) == text


def test_row_and_header_line_up_like_nccl_tests():
    row = table.row_dict("allreduce", "ring", 8, 262144, 1000.0, 0, model_time_us=800.0)
    line = table.format_row(row)
    # nccl-tests: "%12li  %12li  %8s  %6s  %6i" then "  %7s  %6.2f  %6.2f  %5g"
    assert line == ("     1048576        262144     float     sum      -1   1000.0"
                    "    1.05    1.84      0    800.0    1.25")
    header = table.format_header().splitlines()
    assert header[0].startswith("#       size         count      type   redop    root"
                                "     time   algbw   busbw #wrong")
    assert len(header[0]) == len(header[1]) == len(line)
    for word in ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong"):
        end = header[0].index(word) + len(word)
        assert line[end - 1] != " ", word  # values are right-aligned under their names


def test_table_footer():
    rows = [table.row_dict("allreduce", "ring", 4, 1000, 10.0, 0),
            table.row_dict("allreduce", "ring", 4, 2000, 10.0, 2)]
    text = table.format_table(rows, title="allreduce ring")
    lines = text.splitlines()
    assert lines[0] == "# allreduce ring"
    assert lines[-2] == "# Out of bounds values : 2 FAILED"
    # busbw: 4000 B/10 us = 0.4 GB/s * 1.5 = 0.6; 8000 B -> 1.2; mean 0.9
    assert lines[-1] == "# Avg bus bandwidth    : 0.9"
    assert len(lines) == 1 + 2 + 2 + 2


@pytest.mark.parametrize("text,size", [
    ("8", 8), ("4M", 4 * 2**20), ("1K", 1024), ("1G", 2**30), ("128MiB", 128 * 2**20),
    ("1MB", 10**6)])
def test_parse_size(text, size):
    assert table.parse_size(text) == size


def test_parse_size_bad():
    with pytest.raises(InputError) as info:
        table.parse_size("4Q", field="-b")
    assert info.value.field == "-b"


def test_size_sweep_factor_and_step():
    assert table.size_sweep(8, 128, factor=2) == [8, 16, 32, 64, 128]
    assert table.size_sweep(8, 100, factor=4) == [8, 32]
    assert table.size_sweep(2**20, 3 * 2**20) == [2**20, 2 * 2**20, 3 * 2**20]  # -i 1M
    assert table.size_sweep(0, 10, step_bytes=5) == [0, 5, 10]
    assert table.size_sweep(64, 64, factor=2) == [64]


@pytest.mark.parametrize("kwargs", [
    {"min_bytes": 10, "max_bytes": 5},
    {"min_bytes": 0, "max_bytes": 5, "factor": 2},
    {"min_bytes": 1, "max_bytes": 5, "factor": 0},
    {"min_bytes": 1, "max_bytes": 5, "step_bytes": 0},
    {"min_bytes": 1, "max_bytes": 10**9, "step_bytes": 1},
])
def test_size_sweep_rejects(kwargs):
    with pytest.raises(InputError):
        table.size_sweep(**kwargs)


def test_footer_warns_when_the_engine_was_cpu_bound():
    rows = [table.row_dict("allreduce", "ring", 8, 1 << 20, 9000.0, 0, None, 6870.0),
            table.row_dict("allreduce", "ring", 8, 1 << 22, 25000.0, 0, None, 24490.0)]
    rows[0]["engine_cpu_share"], rows[1]["engine_cpu_share"] = 0.97, 0.55
    footer = table.format_footer(rows)
    assert f"Engine CPU-bound at  : {rows[0]['bytes']} B (0.97)" in footer
    assert str(rows[1]["bytes"]) not in footer.splitlines()[-1]
    rows[0]["engine_cpu_share"] = table.ENGINE_BUSY_SHARE - 0.01
    assert "CPU-bound" not in table.format_footer(rows)
    assert "CPU-bound" not in table.format_footer([{k: v for k, v in rows[1].items()
                                                    if k != "engine_cpu_share"}])
