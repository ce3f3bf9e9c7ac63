"""The pure parts of testbed.capacity: warnings, cache validity, rendering."""

from __future__ import annotations

import json

import pytest

from testbed import capacity
from testbed.errors import InputError

MACHINE = {"kernel": "6.1.0-test", "cpus": 2, "testbed": "0.1.0"}


LINES = [{"lines": 2, "mtu": 1500, "flows": 1, "total_bps": 8_000_000_000, "late_p99_ms": 0.5},
         {"lines": 4, "mtu": 1500, "flows": 2, "total_bps": 6_000_000_000, "late_p99_ms": 0.9},
         {"lines": 16, "mtu": 1500, "flows": 8, "total_bps": 4_000_000_000, "late_p99_ms": 3.0},
         {"lines": 2, "mtu": 9000, "flows": 1, "total_bps": 20_000_000_000, "late_p99_ms": 0.3}]


def _doc(bps=2_500_000_000, backend="userspace", **extra):
    doc = {"schema": capacity.SCHEMA, "machine": dict(MACHINE), "lines": LINES,
           "measured_at": capacity._now(),
           "seconds": 3, "streams": 2, "delay_ms": 20.0, "backend": backend, "load_avg_1m": 0.5,
           "delay_line_bps": bps, "late_p99_ms": 0.4, "raw_veth_bps": 10_000_000_000,
           "cpu_s_per_gb": 0.6}
    doc.update(extra)
    return doc


def test_public_surface():
    assert set(capacity.__all__) == {
        "SCHEMA", "WARN_FRACTION", "CACHE_FILE", "machine_fingerprint", "cache_path",
        "load_cached", "save_cached", "measure_capacity", "get_capacity",
        "check_scenario_capacity", "max_configured_rate_bps", "render", "measure_lines",
        "lines_capacity_bps", "MAX_AGE_S"}
    for name in capacity.__all__:
        assert hasattr(capacity, name), name


@pytest.mark.parametrize("rate_bps, warns", [
    (1_000_000_000, False),      # 40 % of 2.5 Gbit/s
    (2_000_000_000, False),      # exactly 80 %: not above
    (2_000_000_001, True),       # just above 80 %
    (10_000_000_000, True),
])
def test_warns_only_above_80_pct_of_capacity(rate_bps, warns):
    text = capacity.check_scenario_capacity(rate_bps, _doc())
    assert (text is not None) == warns, text
    if warns:
        assert "2.50 Gbit/s" in text  # names the measured capacity
        assert f"{rate_bps / 1e9:.2f} Gbit/s" in text  # and the configured rate


def test_unlimited_link_warns():
    for rate in (None, 0):
        text = capacity.check_scenario_capacity(rate, _doc())
        assert text is not None and "no rate limit" in text


def test_no_capacity_or_netem_backend_never_warns():
    assert capacity.check_scenario_capacity(50_000_000_000, None) is None
    assert capacity.check_scenario_capacity(50_000_000_000, _doc(backend="netem")) is None


@pytest.mark.parametrize("bad", [0, -1, None, "2Gbit", True])
def test_bad_capacity_document_is_refused(bad):
    with pytest.raises(InputError) as info:
        capacity.check_scenario_capacity(1_000_000, _doc(bps=bad))
    assert info.value.field == "capacity.delay_line_bps"


def test_negative_configured_rate_is_refused():
    with pytest.raises(InputError) as info:
        capacity.check_scenario_capacity(-5, _doc())
    assert info.value.field == "configured_rate_bps"


def test_max_configured_rate():
    assert capacity.max_configured_rate_bps([100, 5_000, 300]) == 5_000
    assert capacity.max_configured_rate_bps([100, None, 300]) is None
    assert capacity.max_configured_rate_bps([100, 0]) is None
    assert capacity.max_configured_rate_bps([]) is None


def test_cache_round_trip_on_same_machine(tmp_path):
    path = tmp_path / "sub" / "capacity.json"
    written = capacity.save_cached(_doc(), path)
    assert written == path and json.loads(path.read_text())["delay_line_bps"] == 2_500_000_000
    assert capacity.load_cached(path, machine=MACHINE) == _doc()
    assert [p.name for p in path.parent.iterdir()] == ["capacity.json"]  # no temp file left


@pytest.mark.parametrize("changed", [
    {"kernel": "6.2.0-other"}, {"cpus": 8}, {"testbed": "0.2.0"},
])
def test_cache_of_another_machine_is_ignored(tmp_path, changed):
    path = tmp_path / "capacity.json"
    capacity.save_cached(_doc(), path)
    assert capacity.load_cached(path, machine={**MACHINE, **changed}) is None


@pytest.mark.parametrize("content", [
    "", "not json", "[]", json.dumps({**_doc(), "schema": "testbed.capacity/0"}),
    json.dumps({k: v for k, v in _doc().items() if k != "delay_line_bps"}),
])
def test_broken_cache_is_ignored(tmp_path, content):
    path = tmp_path / "capacity.json"
    path.write_text(content)
    assert capacity.load_cached(path, machine=MACHINE) is None


def test_missing_cache_is_none(tmp_path):
    assert capacity.load_cached(tmp_path / "nope.json", machine=MACHINE) is None


def test_cache_path_follows_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path))
    assert capacity.cache_path() == tmp_path / "capacity.json"


def test_get_capacity_uses_cache_without_measuring(monkeypatch, tmp_path):
    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path))
    doc = _doc(machine=capacity.machine_fingerprint())
    capacity.save_cached(doc)

    def boom(**_kw):
        raise AssertionError("measured although a valid cache exists")

    monkeypatch.setattr(capacity, "measure_capacity", boom)
    assert capacity.get_capacity() == doc


def test_get_capacity_refresh_measures_and_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path))
    capacity.save_cached(_doc(machine=capacity.machine_fingerprint()))
    fresh = _doc(bps=7_000_000_000, machine=capacity.machine_fingerprint())
    monkeypatch.setattr(capacity, "measure_capacity", lambda **_kw: dict(fresh))
    monkeypatch.setattr(capacity, "measure_lines", lambda **_kw: LINES)
    assert capacity.get_capacity(refresh=True) == fresh
    assert capacity.load_cached()["delay_line_bps"] == 7_000_000_000


@pytest.mark.parametrize("kwargs, field", [
    ({"seconds": 0}, "seconds"), ({"seconds": 61}, "seconds"),
    ({"streams": 0}, "streams"), ({"delay_ms": 0}, "delay_ms"),
])
def test_measure_capacity_validates_before_touching_anything(kwargs, field):
    with pytest.raises(InputError) as info:
        capacity.measure_capacity(**kwargs)
    assert info.value.field == field


def test_render_names_the_figures():
    text = capacity.render(_doc())
    assert "2.50 Gbit/s (25% of raw veth)" in text
    assert "raw veth: 10.00 Gbit/s" in text
    assert "0.400 ms" in text and "0.600 s" in text
    assert "2.00 Gbit/s" in text  # the warning threshold, 80 % of 2.5
    assert "kernel 6.1.0-test, 2 CPUs" in text
    missing = capacity.render(_doc(late_p99_ms=None, cpu_s_per_gb=None))
    assert "lateness p99 at that load: -" in missing


def test_stale_or_line_less_cache_is_measured_again(tmp_path):
    path = tmp_path / "capacity.json"
    capacity.save_cached(_doc(measured_at="2020-01-01T00:00:00+00:00"), path)
    assert capacity.load_cached(path, machine=MACHINE) is None  # older than MAX_AGE_S
    capacity.save_cached(_doc(lines=[]), path)
    assert capacity.load_cached(path, machine=MACHINE) is None  # schema 1 had no lines


def test_lines_capacity():
    doc = _doc()
    assert capacity.lines_capacity_bps(doc, 1) == 8e9  # the nearest count at or above: 2
    assert capacity.lines_capacity_bps(doc, 3) == 6e9
    assert capacity.lines_capacity_bps(doc, 16) == 4e9
    assert capacity.lines_capacity_bps(doc, 32) == 2e9  # beyond 16: 4e9 x 16 / 32
    assert capacity.lines_capacity_bps(doc, 2, mtu=9000) == 20e9
    assert capacity.lines_capacity_bps(doc, 4, mtu=9000) == 10e9  # 20e9 x 2 / 4
    with pytest.raises(InputError):
        capacity.lines_capacity_bps(_doc(lines=[]), 2)
