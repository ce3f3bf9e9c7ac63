"""results.json: the schema, the document's life cycle, atomic writes and loading."""

from __future__ import annotations

import copy
import json
import math
import os
import stat
import textwrap
from pathlib import Path

import jsonschema
import pytest

from testbed import results as results_module
from testbed.errors import InputError, RunError
from testbed.results import (
    SCHEMA_ID,
    finish_results,
    get_value,
    load_results,
    load_schema,
    new_results,
    new_variant,
    overall_verdict,
    save_results,
    validate_results,
    write_json_atomic,
)
from testbed.scenario import parse_scenario

FIXTURE = Path(__file__).parent / "fixtures" / "results_sample.json"


@pytest.fixture
def sample() -> dict:
    return json.loads(FIXTURE.read_text())


def test_all_is_exported():
    for name in results_module.__all__:
        assert hasattr(results_module, name), name


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_sample_fixture_is_valid_and_realistic(sample):
    validate_results(sample)
    assert sample["schema"] == SCHEMA_ID
    assert [v["name"] for v in sample["variants"]] == ["direct-interconnect", "internet-transit"]
    for variant in sample["variants"]:
        samples = variant["ping"]["samples_ms"]
        stats = variant["ping"]["rtt_ms"]
        assert stats["count"] == len(samples)
        assert stats["min"] == pytest.approx(min(samples), abs=1e-3)
        assert stats["max"] == pytest.approx(max(samples), abs=1e-3)
        assert stats["mean"] == pytest.approx(sum(samples) / len(samples), abs=1e-3)
        assert variant["tcp"]["intervals"]
    direct, transit = sample["variants"]
    assert transit["ping"]["rtt_ms"]["mean"] > direct["ping"]["rtt_ms"]["mean"]
    assert transit["path"]["path_mtu"] < direct["path"]["path_mtu"]


def _set(doc, dotted, value):
    node = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _delete(doc, dotted):
    node = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[parts[-1]]


@pytest.mark.parametrize(
    "dotted, value, where",
    [
        ("schema", "testbed.results/2", "schema"),
        ("complete", "yes", "complete"),
        ("started_at", "yesterday", "started_at"),
        ("environment.delay_backend", "tc", "environment.delay_backend"),
        ("environment.cpus", 0, "environment.cpus"),
        ("host_sysctls", {"net.ipv4.tcp_ecn": 1}, "host_sysctls.net.ipv4.tcp_ecn"),
        ("variants.0.name", "Direct Interconnect", "variants.0.name"),
        ("variants.0.errors", "boom", "variants.0.errors"),
        ("variants.1.errors.0", 42, "variants.1.errors.0"),
        ("variants.0.ping.rtt_ms.mean", "20ms", "variants.0.ping.rtt_ms.mean"),
        ("variants.0.ping.rtt_ms.mean_ms", 1.0, "variants.0.ping.rtt_ms"),
        ("variants.0.ping.loss_pct", 101, "variants.0.ping.loss_pct"),
        ("variants.0.ping.samples_ms.3", None, "variants.0.ping.samples_ms.3"),
        ("variants.1.owd.forward.reordered", -1, "variants.1.owd.forward.reordered"),
        ("variants.1.tcp.throughput_mbps", -5, "variants.1.tcp.throughput_mbps"),
        ("variants.1.tcp.intervals.2.mbps", "fast", "variants.1.tcp.intervals.2.mbps"),
        ("variants.1.path.path_mtu", 40, "variants.1.path.path_mtu"),
        ("variants.1.fidelity.checks.1.verdict", "maybe", "variants.1.fidelity.checks.1.verdict"),
        ("variants.1.emulator.delay_lines.0.dropped", -1, "variants.1.emulator.delay_lines.0.dropped"),
        ("variants.1.udp", [], "variants.1.udp"),
    ],
)
def test_broken_documents_name_the_failing_path(sample, dotted, value, where):
    _set(sample, dotted, value)
    with pytest.raises(RunError) as info:
        validate_results(sample)
    assert f"invalid at {where}:" in str(info.value)


@pytest.mark.parametrize(
    "dotted, where",
    [
        ("variants", "<top>"),
        ("environment.kernel", "environment"),
        ("variants.0.complete", "variants.0"),
        ("variants.0.ping.rtt_ms", "variants.0.ping"),
        ("variants.0.ping.rtt_ms.p99", "variants.0.ping.rtt_ms"),
        ("variants.1.tcp.throughput_mbps", "variants.1.tcp"),
        ("variants.1.fidelity.checks.0.tolerance", "variants.1.fidelity.checks.0"),
    ],
)
def test_missing_required_keys(sample, dotted, where):
    _delete(sample, dotted)
    with pytest.raises(RunError) as info:
        validate_results(sample)
    assert f"invalid at {where}:" in str(info.value)
    assert "required" in str(info.value)


def test_nan_is_refused_with_its_path(sample):
    sample["variants"][1]["owd"]["forward"]["samples_ms"][5] = math.nan
    with pytest.raises(RunError) as info:
        validate_results(sample)
    assert "variants.1.owd.forward.samples_ms.5" in str(info.value)


def test_sections_may_be_absent_or_null(sample):
    direct, transit = sample["variants"]
    for key in ("ping", "owd", "tcp", "udp", "path", "fidelity", "emulator"):
        del direct[key]
        transit[key] = None
    validate_results(sample)


def test_unknown_keys_are_allowed_for_extension(sample):
    sample["variants"][0]["tcp"]["sender_mbps"] = 1900.0
    sample["variants"][0]["future_metric"] = {"x": 1}
    validate_results(sample)


def test_empty_stats_are_valid(sample):
    sample["variants"][0]["ping"]["rtt_ms"] = {
        "count": 0, "min": None, "mean": None, "p50": None, "p90": None, "p99": None, "max": None, "stdev": None
    }
    validate_results(sample)


# --------------------------------------------------------------- life cycle

SCENARIO = textwrap.dedent(
    """\
    name: two
    topology: two-clouds
    links: {wan: {preset: internet-transit}}
    host_sysctls: {net.ipv4.tcp_congestion_control: cubic}
    variants:
      - name: a
      - name: b
        params: {transit_hops: 2}
        links: {wan: {preset: internet-transit, loss: 1%}}
    measure: {ping: {count: 3}}
    """
)


@pytest.fixture
def scenario():
    import yaml

    return parse_scenario(yaml.safe_load(SCENARIO), source="two.yaml")


ENV = {"kernel": "6.1.0", "delay_backend": "userspace", "cpus": 2, "tools": {"iperf3": "3.12"}}


def test_new_results_is_valid_and_incomplete(scenario):
    doc = new_results(scenario, ENV, overrides=["measure.ping.count=3"], quick=True)
    validate_results(doc)
    assert doc["complete"] is False and doc["finished_at"] is None
    assert doc["scenario"] == "two"
    assert doc["scenario_config"]["measure"] == {"ping": {"count": 3, "interval_s": 0.2, "size_bytes": 56}}
    assert doc["host_sysctls"] == {"net.ipv4.tcp_congestion_control": "cubic"}
    assert doc["overrides"] == ["measure.ping.count=3"] and doc["quick"] is True
    assert doc["source"] == "two.yaml"


def test_new_variant_records_configured_links(scenario):
    doc = new_results(scenario, ENV)
    doc["variants"] = [new_variant(scenario, v) for v in scenario.variants]
    validate_results(doc)
    a, b = doc["variants"]
    assert b["params"] == {"transit_hops": 2}
    assert a["links"]["wan"]["loss"] == "0.05%"
    assert b["links"]["wan"]["loss"] == "1%"
    assert a["complete"] is False and a["errors"] == []


def test_finish_results_complete_only_if_every_variant_is(scenario):
    doc = new_results(scenario, ENV)
    doc["variants"] = [new_variant(scenario, v) for v in scenario.variants]
    for variant in doc["variants"]:
        variant["complete"] = True
    finish_results(doc)
    assert doc["complete"] is True and doc["finished_at"] is not None
    validate_results(doc)
    doc["variants"][1]["complete"] = False
    assert finish_results(doc)["complete"] is False
    doc["variants"][1]["complete"] = True
    assert finish_results(doc, interrupted=True)["complete"] is False
    doc["errors"].append("setup failed")
    assert finish_results(doc)["complete"] is False
    assert finish_results({"variants": [], "errors": []})["complete"] is False


# ------------------------------------------------------------- atomic write


def test_write_json_atomic_writes_and_replaces(tmp_path, sample):
    target = tmp_path / "results.json"
    target.write_text("old")
    write_json_atomic(target, sample)
    assert json.loads(target.read_text()) == sample
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["results.json"]


def test_failed_serialisation_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"old": true}')
    with pytest.raises(RunError):
        write_json_atomic(target, {"bad": math.inf})
    with pytest.raises(RunError):
        write_json_atomic(target, {"bad": object()})
    assert target.read_text() == '{"old": true}'
    assert os.listdir(tmp_path) == ["results.json"]


def test_failed_rename_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text('{"old": true}')

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module.os, "replace", broken_replace)
    with pytest.raises(RunError) as info:
        write_json_atomic(target, {"new": True})
    assert "No space left" in str(info.value)
    assert target.read_text() == '{"old": true}'
    assert os.listdir(tmp_path) == ["results.json"]


def test_write_into_missing_directory_is_a_run_error(tmp_path):
    with pytest.raises(RunError):
        write_json_atomic(tmp_path / "nope" / "results.json", {})


def test_save_results_validates_first(tmp_path, sample):
    target = tmp_path / "results.json"
    save_results(target, sample)
    assert load_results(target) == sample
    sample["schema"] = "other"
    with pytest.raises(RunError):
        save_results(tmp_path / "bad.json", sample)
    assert not (tmp_path / "bad.json").exists()


# ------------------------------------------------------------------ loading


def test_load_results_errors_are_input_errors(tmp_path, sample):
    with pytest.raises(InputError) as info:
        load_results(tmp_path / "missing.json")
    assert info.value.message == "file not found"

    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"schema": "testbed.results/1",\n "x": }')
    with pytest.raises(InputError) as info:
        load_results(bad_json)
    assert info.value.field.startswith("line 2")

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "flent/1"}))
    with pytest.raises(InputError) as info:
        load_results(other)
    assert info.value.field == "schema"

    broken = copy.deepcopy(sample)
    broken["variants"][0]["ping"]["loss_pct"] = -1
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(InputError) as info:
        load_results(path)
    assert "variants.0.ping.loss_pct" in info.value.message


# ------------------------------------------------------------------ helpers


def test_get_value(sample):
    direct = sample["variants"][0]
    assert get_value(direct, "ping.rtt_ms.count") == 30
    assert get_value(direct, "tcp.intervals.0.start_s") == 0.0
    assert get_value(direct, "tcp.intervals.99.start_s") is None
    assert get_value(direct, "nothing.here", "-") == "-"
    direct["udp"] = None
    assert get_value(direct, "udp.jitter_ms", "-") == "-"


@pytest.mark.parametrize(
    "verdicts, expected",
    [
        (["pass", "pass"], "pass"),
        (["pass", "warn"], "warn"),
        (["skip", "fail", "warn"], "fail"),
        (["skip"], "skip"),
        ([], None),
    ],
)
def test_overall_verdict(verdicts, expected):
    variant = {"fidelity": {"checks": [{"verdict": v} for v in verdicts]}}
    assert overall_verdict(variant) == expected


def test_overall_verdict_without_fidelity():
    assert overall_verdict({"name": "a"}) is None
    assert overall_verdict({"fidelity": None}) is None
