"""Unit tests for testbed.units: tc-like parsing and formatting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed import units
from testbed.errors import InputError
from testbed.units import (
    MAX_RATE_BPS,
    format_number,
    format_pct,
    format_rate,
    format_size_bytes,
    format_time,
    parse_pct,
    parse_rate_bps,
    parse_size_bytes,
    parse_time_ms,
)

FIELD = "links.wan.x"


def test_all_names_exist():
    for name in units.__all__:
        assert hasattr(units, name), name


def _bad(parser, value, field=FIELD) -> InputError:
    """Call parser expecting an InputError that names the field and quotes the value."""
    with pytest.raises(InputError) as info:
        parser(value, field)
    err = info.value
    assert err.field == field
    assert str(err).startswith(f"{field}: ")
    assert repr(value) in err.message, (value, err.message)
    assert err.exit_code == 2
    return err


# ---------------------------------------------------------------- rates


@pytest.mark.parametrize(
    "value, expected_bps",
    [
        ("10Gbit", 10_000_000_000),
        ("250Mbit", 250_000_000),
        ("100kbit", 100_000),
        ("1.5Gbit", 1_500_000_000),
        ("1.1Gbit", 1_100_000_000),  # exact decimal, no float noise
        ("500bit", 500),
        ("1Tbit", 1_000_000_000_000),
        ("10gbit", 10_000_000_000),  # case-insensitive like tc
        ("10GBIT", 10_000_000_000),
        (" 10 Gbit ", 10_000_000_000),
        ("1Kibit", 1024),
        ("1Mibit", 1024**2),
        ("2Gibit", 2 * 1024**3),
        ("1Tibit", 1024**4),
        ("1bps", 8),  # tc(8): bps = bytes per second
        ("125MBps", 1_000_000_000),
        ("125mbps", 1_000_000_000),  # tc reads this as bytes/s too
        ("1kbps", 8_000),
        ("1gbps", 8_000_000_000),
        ("1KiBps", 8 * 1024),
        ("1MiBps", 8 * 1024**2),
        ("1e9", 1_000_000_000),  # bare string number = bit/s
        ("1000", 1000),
        (1000, 1000),  # bare int = bit/s
        (1e9, 1_000_000_000),  # bare float = bit/s
        (2.5, 2),  # rounds half to even
        ("1.6bit", 2),
    ],
)
def test_parse_rate_good(value, expected_bps):
    result = parse_rate_bps(value, FIELD)
    assert result == expected_bps
    assert isinstance(result, int)


@pytest.mark.parametrize(
    "value",
    ["fast", "", "10 Gbits", "10Gb", "Gbit", "10Gbit/s", "1,000bit", "0", "0Gbit", "-1Mbit",
     "0.1bit", "1e999Gbit", "2000Tbit", True, None, [1], float("nan"), float("inf"), -5, 0],
)
def test_parse_rate_bad(value):
    _bad(parse_rate_bps, value)


def test_parse_rate_fast_message():
    err = _bad(parse_rate_bps, "fast", "links.wan.rate")
    assert "'fast'" in str(err)
    assert "Gbit" in err.message  # tells the user what a rate looks like


def test_parse_rate_zero_and_unit_messages():
    assert "greater than 0" in _bad(parse_rate_bps, "0Mbit").message
    assert "unknown unit 'gb'" in _bad(parse_rate_bps, "10Gb").message


def test_parse_rate_max():
    assert parse_rate_bps(MAX_RATE_BPS, FIELD) == MAX_RATE_BPS
    _bad(parse_rate_bps, MAX_RATE_BPS + 1)


# ---------------------------------------------------------------- times


@pytest.mark.parametrize(
    "value, expected_ms",
    [
        ("15ms", 15.0),
        ("250us", 0.25),
        ("1.5s", 1500.0),
        ("0", 0.0),
        (0, 0.0),
        ("20", 20.0),  # bare number = ms (not tc's microseconds)
        (2.5, 2.5),
        ("100ns", 0.0001),
        ("1sec", 1000.0),
        ("2secs", 2000.0),
        ("3 msecs", 3.0),
        ("40usec", 0.04),
        ("15MS", 15.0),
        ("1e3us", 1.0),
        (".5ms", 0.5),
        ("-0", 0.0),
    ],
)
def test_parse_time_good(value, expected_ms):
    result = parse_time_ms(value, FIELD)
    assert result == expected_ms
    assert isinstance(result, float)
    assert math.copysign(1.0, result) == 1.0  # never -0.0


@pytest.mark.parametrize(
    "value", ["fast", "5min", "5 m s", "ms", "1h", "", True, None, {"ms": 1}, float("nan")]
)
def test_parse_time_bad(value):
    _bad(parse_time_ms, value)


@pytest.mark.parametrize("value", ["-1ms", "-0.001", -3, -0.5, "-2s"])
def test_parse_time_negative(value):
    err = _bad(parse_time_ms, value, "links.wan.delay")
    assert "must not be negative" in err.message
    assert str(err).startswith("links.wan.delay: ")


# ---------------------------------------------------------------- percentages


@pytest.mark.parametrize(
    "value, expected_pct",
    [("0.1%", 0.1), ("0.1", 0.1), (5, 5.0), (0.05, 0.05), ("100%", 100.0), ("0%", 0.0),
     (" 3 % ", 3.0), ("1e-3%", 0.001)],
)
def test_parse_pct_good(value, expected_pct):
    result = parse_pct(value, FIELD)
    assert result == expected_pct
    assert isinstance(result, float)


@pytest.mark.parametrize("value", ["150%", "-1%", 100.0001, -0.1, 101])
def test_parse_pct_out_of_range(value):
    err = _bad(parse_pct, value, "links.wan.loss")
    assert "between 0% and 100%" in err.message


@pytest.mark.parametrize("value", ["1p", "abc", "%", "", True, None, "5%%"])
def test_parse_pct_bad(value):
    _bad(parse_pct, value)


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "value, expected_bytes",
    [
        ("1500", 1500),
        (1500, 1500),
        ("1500B", 1500),
        ("64KiB", 65536),
        ("1MB", 1_000_000),
        ("4M", 4 * 2**20),  # nccl-tests style: bare M is MiB
        ("2G", 2 * 2**30),
        ("1MiB", 2**20),
        ("1GiB", 2**30),
        ("1kb", 1000),
        ("1KB", 1000),
        ("8K", 8192),
        ("1.5KiB", 1536),
        ("1T", 2**40),
        ("0", 0),
    ],
)
def test_parse_size_good(value, expected_bytes):
    result = parse_size_bytes(value, FIELD)
    assert result == expected_bytes
    assert isinstance(result, int)


@pytest.mark.parametrize("value", ["1.5", "-1", -1, "x", "4Mbit", "1.0001KB", True, None, 1.5])
def test_parse_size_bad(value):
    _bad(parse_size_bytes, value)


def test_parse_size_fraction_message():
    assert "whole number of bytes" in _bad(parse_size_bytes, "1.5").message


# ---------------------------------------------------------------- formatters


@pytest.mark.parametrize(
    "rate_bps, text",
    [
        (10_000_000_000, "10Gbit"),
        (1_500_000_000, "1.5Gbit"),
        (250_000_000, "250Mbit"),
        (100_000, "100kbit"),
        (500, "500bit"),
        (1_000_000_000_000, "1Tbit"),
        (1024, "1.024kbit"),
        (123_456_789, "123456.789kbit"),
        (1_000_001, "1000.001kbit"),
    ],
)
def test_format_rate(rate_bps, text):
    assert format_rate(rate_bps) == text
    assert parse_rate_bps(text, FIELD) == rate_bps


@pytest.mark.parametrize(
    "time_ms, text",
    [(15.0, "15ms"), (0.25, "250us"), (1500.0, "1.5s"), (0.0, "0ms"), (0.1, "100us"),
     (1000.0, "1s"), (999.5, "999.5ms"), (43.5, "43.5ms"), (0.025, "25us"), (1.0, "1ms")],
)
def test_format_time(time_ms, text):
    assert format_time(time_ms) == text
    assert parse_time_ms(text, FIELD) == time_ms


@pytest.mark.parametrize(
    "pct, text", [(0.1, "0.1%"), (100.0, "100%"), (0.0, "0%"), (0.05, "0.05%"), (12.5, "12.5%")]
)
def test_format_pct(pct, text):
    assert format_pct(pct) == text
    assert parse_pct(text, FIELD) == pct


@pytest.mark.parametrize(
    "size_bytes, text",
    [(65536, "64KiB"), (1_000_000, "1MB"), (1500, "1500B"), (4 * 2**20, "4MiB"), (0, "0B"),
     (3000, "3KB"), (2**30, "1GiB")],
)
def test_format_size(size_bytes, text):
    assert format_size_bytes(size_bytes) == text
    assert parse_size_bytes(text, FIELD) == size_bytes


def test_format_number_plain():
    assert format_number(1e-7) == "0.0000001"
    assert format_number(1e20) == "100000000000000000000"
    assert format_number(1.5) == "1.5"
    assert format_number(3.0) == "3"


@pytest.mark.parametrize(
    "formatter, value",
    [(format_rate, 0), (format_rate, -5), (format_time, -1.0), (format_time, float("inf")),
     (format_pct, float("nan")), (format_size_bytes, -1)],
)
def test_formatters_reject_impossible_values(formatter, value):
    with pytest.raises(ValueError):
        formatter(value)


# ---------------------------------------------------------------- round-trip properties


@given(st.integers(min_value=1, max_value=MAX_RATE_BPS))
def test_rate_round_trip(rate_bps):
    assert parse_rate_bps(format_rate(rate_bps), FIELD) == rate_bps


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_time_round_trip(time_ms):
    text = format_time(time_ms)
    assert "e" not in text.lower().replace("sec", "")
    assert parse_time_ms(text, FIELD) == time_ms


@given(st.floats(min_value=0, max_value=100, allow_nan=False))
def test_pct_round_trip(pct):
    assert parse_pct(format_pct(pct), FIELD) == pct


@given(st.integers(min_value=0, max_value=2**50))
def test_size_round_trip(size_bytes):
    assert parse_size_bytes(format_size_bytes(size_bytes), FIELD) == size_bytes
