"""Scenario files: the model, loading, --set and --quick, and every kind of bad field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from testbed import scenario as scenario_module
from testbed.errors import InputError
from testbed.profile import LinkSpec
from testbed.scenario import STEP_OPTIONS, Measure, list_scenarios, load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[2]

FLAGSHIP = textwrap.dedent(
    """\
    name: direct-vs-transit
    description: Direct private interconnect vs public-internet transit between two clouds.
    topology: two-clouds
    params:
      hosts_per_site: 1
      sites: [coreweave, gcp]
    links:
      site-fabric: site-fabric
      direct: {preset: direct-interconnect, rate: 2Gbit}
      transit-hop: {preset: internet-transit}
    host_sysctls:
      net.ipv4.tcp_congestion_control: cubic
      net.ipv4.tcp_rmem: "4096 131072 16777216"
    endpoints: {src: coreweave-h1, dst: gcp-h1}
    variants:
      - name: direct-interconnect
        params: {path: direct}
      - name: internet-transit
        params: {path: transit, transit_hops: 4}
        links: {transit-hop: {preset: internet-transit, loss: 0.1%}}
    measure:
      ping: {count: 100, interval_s: 0.02}
      owd: {count: 500, interval_ms: 10}
      tcp: {duration_s: 8, streams: 1}
      udp: {duration_s: 3, bitrate: 200Mbit}
      path: {}
      steady: {}
    repeats: 1
    quick:
      measure.tcp.duration_s: 3
      measure.ping.count: 30
    fidelity: {rtt_tolerance_pct: 10, throughput_tolerance_pct: 15, jitter_tolerance_pct: 30}
    """
)
TOPOLOGIES = ("two-clouds", "single-site")


@pytest.fixture
def flagship(tmp_path: Path) -> Path:
    path = tmp_path / "direct-vs-transit.yaml"
    path.write_text(FLAGSHIP)
    return path


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(path: Path, overrides=(), **kwargs) -> InputError:
    kwargs.setdefault("topologies", TOPOLOGIES)
    with pytest.raises(InputError) as info:
        load_scenario(path, overrides=list(overrides), **kwargs)
    return info.value


# ------------------------------------------------------------------ good file


def test_all_is_exported():
    for name in scenario_module.__all__:
        assert hasattr(scenario_module, name), name


def test_flagship_loads(flagship):
    s = load_scenario(flagship, topologies=TOPOLOGIES)
    assert s.name == "direct-vs-transit"
    assert s.topology == "two-clouds"
    assert [v.name for v in s.variants] == ["direct-interconnect", "internet-transit"]
    assert s.endpoints.src == "coreweave-h1" and s.endpoints.dst == "gcp-h1"
    assert s.host_sysctls["net.ipv4.tcp_rmem"] == "4096 131072 16777216"
    assert s.measure.ping.count == 100 and s.measure.ping.interval_s == 0.02
    assert s.measure.tcp.duration_s == 8
    assert s.measure.udp.bitrate_bps == 200_000_000
    assert s.measure.path.max_hops == 30  # "path: {}" means defaults
    assert s.fidelity.throughput_tolerance_pct == 15
    assert s.source == str(flagship)


def test_steps_keep_file_order(tmp_path, flagship):
    text = FLAGSHIP.replace(
        "  ping: {count: 100, interval_s: 0.02}\n", ""
    ).replace("  steady: {}\n", "  steady: {}\n  ping: {count: 5}\n")
    path = _write(tmp_path, text, "reordered.yaml")
    kinds = [kind for kind, _ in load_scenario(path).steps()]
    assert kinds == ["owd", "tcp", "udp", "path", "steady", "ping"]
    assert list(load_scenario(path).to_dict()["measure"]) == kinds


def test_step_left_out_is_not_run(tmp_path):
    text = FLAGSHIP.split("measure:")[0] + "measure:\n  tcp: {duration_s: 2}\n  path:\n"
    s = load_scenario(_write(tmp_path, text))
    assert [kind for kind, _ in s.steps()] == ["tcp", "path"]
    assert s.measure.ping is None
    assert s.measure.path.max_hops == 30  # "path:" (null) means defaults too


def test_measure_registry_matches_model():
    assert set(STEP_OPTIONS) == set(Measure.model_fields)


def test_to_dict_is_json_and_round_trips(flagship):
    s = load_scenario(flagship)
    data = s.to_dict()
    json.dumps(data, allow_nan=False)
    again = parse_scenario(data, presets=None)
    assert again.to_dict() == data


def test_variant_config_merges_and_variant_wins(flagship):
    s = load_scenario(flagship)
    direct = s.variant_config("direct-interconnect")
    transit = s.variant_config(1)
    assert direct["params"] == {"hosts_per_site": 1, "sites": ["coreweave", "gcp"], "path": "direct"}
    assert transit["params"]["path"] == "transit" and transit["params"]["transit_hops"] == 4
    assert transit["links"]["transit-hop"] == {"preset": "internet-transit", "loss": "0.1%"}
    assert direct["links"]["transit-hop"] == {"preset": "internet-transit"}
    assert transit["links"]["direct"] == {"preset": "direct-interconnect", "rate": "2Gbit"}
    assert transit["topology"] == "two-clouds"
    assert transit["endpoints"] == {"src": "coreweave-h1", "dst": "gcp-h1"}
    # merging never changes the shared settings
    assert "path" not in s.params


def test_variant_lookup_errors(flagship):
    s = load_scenario(flagship)
    with pytest.raises(InputError) as info:
        s.variant_config("nope")
    assert "direct-interconnect" in info.value.message
    with pytest.raises(InputError):
        s.variant_config(2)


def test_field_origin_helpers(flagship):
    s = load_scenario(flagship)
    assert s.param_field("internet-transit", "transit_hops") == "variants.1.params.transit_hops"
    assert s.param_field("internet-transit", "hosts_per_site") == "params.hosts_per_site"
    assert s.link_field(1, "transit-hop") == "variants.1.links.transit-hop"
    assert s.link_field(0, "transit-hop") == "links.transit-hop"


def test_variant_links_resolve_presets(flagship):
    s = load_scenario(flagship)
    direct = s.variant_links("direct-interconnect")
    transit = s.variant_links("internet-transit")
    assert all(isinstance(spec, LinkSpec) for spec in transit.values())
    assert direct["direct"].forward.rate_bps == 2_000_000_000
    assert transit["transit-hop"].forward.loss_pct == pytest.approx(0.1)
    assert direct["transit-hop"].forward.loss_pct != pytest.approx(0.1)


def test_nested_sysctls_are_flattened(tmp_path):
    text = FLAGSHIP.replace(
        "host_sysctls:\n", "host_sysctls:\n  net: {ipv4: {tcp_ecn: 1}}\n"
    )
    s = load_scenario(_write(tmp_path, text))
    assert s.host_sysctls["net.ipv4.tcp_ecn"] == "1"
    assert s.host_sysctls["net.ipv4.tcp_congestion_control"] == "cubic"


# ------------------------------------------------------------- --set, --quick


def test_overrides_apply_before_validation(flagship):
    s = load_scenario(
        flagship,
        overrides=[
            "variants.1.params.transit_hops=6",
            "measure.udp.bitrate=500Mbit",
            "host_sysctls.net.ipv4.tcp_congestion_control=bbr",
            "host_sysctls.net.ipv4.tcp_ecn=1",
        ],
    )
    assert s.variant_config(1)["params"]["transit_hops"] == 6
    assert s.measure.udp.bitrate_bps == 500_000_000
    assert s.host_sysctls["net.ipv4.tcp_congestion_control"] == "bbr"
    assert s.host_sysctls["net.ipv4.tcp_ecn"] == "1"


def test_quick_applies_quick_section(flagship):
    s = load_scenario(flagship, quick=True)
    assert s.measure.tcp.duration_s == 3
    assert s.measure.ping.count == 30
    assert s.measure.owd.count == 500  # untouched by quick


def test_without_quick_the_quick_section_is_not_applied(flagship):
    s = load_scenario(flagship)
    assert s.measure.tcp.duration_s == 8 and s.measure.ping.count == 100


def test_set_wins_over_quick(flagship):
    s = load_scenario(flagship, quick=True, overrides=["measure.tcp.duration_s=2"])
    assert s.measure.tcp.duration_s == 2
    assert s.measure.ping.count == 30


def test_set_can_edit_the_quick_section(flagship):
    s = load_scenario(flagship, quick=True, overrides=["quick.measure.ping.count=7"])
    assert s.measure.ping.count == 7


def test_bad_quick_section_fails_even_without_quick(flagship):
    err = _error(flagship, ["quick.measure.tcp.duration_s=-1"])
    assert err.field == "measure.tcp.duration_s"
    assert "quick" in err.message


def test_quick_key_into_a_scalar(flagship):
    err = _error(flagship, ["quick={name.x: 1}"], quick=True)
    assert err.field == "quick.name.x"


# ------------------------------------------------------------------ bad fields


@pytest.mark.parametrize(
    "override, field, words",
    [
        ("variants.1.params.transit_hops=2024-01-01", "variants.1.params.transit_hops", "quote it"),
        ("variants.1.params.Bad-Key=1", "variants.1.params.Bad-Key", "invalid parameter name"),
        ("variants.1.name=direct-interconnect", "variants.1.name", "duplicate variant name"),
        ("variants.0.name=Direct_Interconnect", "variants.0.name", "invalid name"),
        ("variants.0.name=" + "a" * 33, "variants.0.name", "invalid name"),
        ("variants.0.color=red", "variants.0.color", "unknown key 'color'"),
        ("variants=[]", "variants", "at least 1"),
        ("measure.tcp.duration_s=0", "measure.tcp.duration_s", "greater than 0"),
        ("measure.tcp.duraton_s=3", "measure.tcp.duraton_s", "did you mean 'duration_s'"),
        ("measure.tcp.streams=129", "measure.tcp.streams", "128"),
        ("measure.tcp.streams=0", "measure.tcp.streams", "greater than or equal to 1"),
        ("measure.tcp.streams=1.5", "measure.tcp.streams", "integer"),
        ("measure.tcp.cc=bbr;reboot", "measure.tcp.cc", "congestion control"),
        ("measure.tcp.window=lots", "measure.tcp.window", "invalid size"),
        ("measure.ping.count=0", "measure.ping.count", "greater than or equal to 1"),
        ("measure.ping.count='5'", "measure.ping.count", "integer"),
        ("measure.ping.interval_s=0.001", "measure.ping.interval_s", "0.002"),
        ("measure.ping.size_bytes=70000", "measure.ping.size_bytes", "65507"),
        ("measure.owd.interval_ms=-1", "measure.owd.interval_ms", "greater than"),
        ("measure.udp.bitrate=fast", "measure.udp.bitrate", "invalid rate"),
        ("measure.udp.bitrate=0Mbit", "measure.udp.bitrate", "greater than 0"),
        ("measure.udp.bitrate=true", "measure.udp.bitrate", "string or an integer"),
        ("measure.path.max_hops=65", "measure.path.max_hops", "64"),
        ("measure.steady.tolerance_pct=0", "measure.steady.tolerance_pct", "greater than 0"),
        ("measure.fireworks={}", "measure.fireworks", "unknown measurement step 'fireworks'"),
        ("measure.collective.op=allfoo", "measure.collective.op", "allreduce"),
        ("measure.collective.protocol=lazy", "measure.collective.protocol", "rendezvous"),
        ("measure.collective.window=0", "measure.collective.window", "greater than or equal to 1"),
        ("measure={}", "measure", "at least one measurement step"),
        ("measure=", "measure", "valid dictionary"),
        ("repeats=0", "repeats", "greater than or equal to 1"),
        ("repeats=true", "repeats", "integer"),
        ("name=", "name", "valid string"),
        ("topology=two clouds", "topology", "invalid topology name"),
        ("topology=three-clouds", "topology", "unknown topology 'three-clouds' (known: single-site, two-clouds)"),
        ("endpoints.src=gcp-h1", "endpoints.dst", "different"),
        ("endpoints.dst=gcp_h1", "endpoints.dst", "invalid name"),
        ("endpoints.via=r1", "endpoints.via", "unknown key"),
        ("host_sysctls.kernel.core_pattern='|/bin/sh'", "host_sysctls.kernel.core_pattern", "net.*"),
        ("host_sysctls.net.ipv4.tcp_rmem='1 2; reboot'", "host_sysctls.net.ipv4.tcp_rmem", "invalid sysctl value"),
        ("host_sysctls={net.ipv4/../../x: 1}", "host_sysctls.net.ipv4/../../x", "net.*"),
        ("host_sysctls.net.ipv4.tcp_ecn=[1]", "host_sysctls.net.ipv4.tcp_ecn", "string or an integer"),
        ("fidelity.rtt_tolerance_pct=-5", "fidelity.rtt_tolerance_pct", "greater than 0"),
        ("fidelity.owd_tolerance_pct=5", "fidelity.owd_tolerance_pct", "unknown key"),
        ("links.Direct=direct-interconnect", "links.Direct", "invalid name"),
        ("links.direct.rate=fast", "links.direct.rate", "invalid rate"),
        ("links.direct.preset=warp-drive", "links.direct.preset", "unknown preset"),
        ("variants.1.links.transit-hop.loss=0.1x", "variants.1.links.transit-hop.loss", "percentage"),
        ("variants.1.links.transit-hop.rat=1Gbit", "variants.1.links.transit-hop.rat", "unknown field"),
        ("links.direct=5", "links.direct", "preset name or a mapping"),
        ("quick={measure..x: 1}", "quick.measure..x", "empty segment"),
    ],
)
def test_bad_field_names_its_dotted_path(flagship, override, field, words):
    err = _error(flagship, [override])
    assert err.field == field, str(err)
    assert words in err.message, str(err)
    assert err.source == str(flagship)
    assert "\n" not in str(err)
    assert err.exit_code == 2


@pytest.mark.parametrize("key", ["out", "output_dir", "results_path", "report"])
def test_scenario_cannot_name_output_paths(flagship, key):
    err = _error(flagship, [f"{key}=/etc/passwd"])
    assert err.field == key
    assert "unknown key" in err.message


def test_missing_required_fields(tmp_path):
    err = _error(_write(tmp_path, "name: x\ntopology: two-clouds\nvariants: [{name: a}]\n"))
    assert err.field == "measure"
    assert "required" in err.message
    err = _error(_write(tmp_path, "name: x\nvariants: [{name: a}]\nmeasure: {ping: {}}\n"))
    assert err.field == "topology"


def test_several_errors_are_counted_in_one_line(flagship):
    err = _error(flagship, ["measure.tcp.streams=0", "measure.ping.count=0"])
    assert "(and 1 more error)" in err.message


def test_unknown_step_lists_the_known_ones(flagship):
    err = _error(flagship, ["measure.iperf={}"])
    for kind in STEP_OPTIONS:
        assert kind in err.message


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = _write(tmp_path, "name: x\nvariants: [a, b\nmeasure: {}\n")
    err = _error(path)
    assert err.field.startswith("line ")
    assert "column" in err.field
    assert "invalid YAML" in err.message
    assert err.source == str(path)


def test_duplicate_yaml_key_is_an_error(tmp_path):
    text = FLAGSHIP + "repeats: 3\n"
    err = _error(_write(tmp_path, text))
    assert "duplicate key 'repeats'" in err.message
    assert err.field.startswith("line ")


def test_yaml_tags_are_not_executed(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['true']\n")
    err = _error(path)
    assert "invalid YAML" in err.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_top_level_must_be_a_mapping(tmp_path, text):
    err = _error(_write(tmp_path, text))
    assert err.field == "<top>"


def test_missing_file(tmp_path):
    err = _error(tmp_path / "nope.yaml")
    assert err.message == "file not found"


def test_topologies_none_skips_the_registry_check(flagship):
    load_scenario(flagship, overrides=["topology=anything-goes"], topologies=None)


def test_parse_scenario_requires_a_mapping():
    with pytest.raises(InputError):
        parse_scenario(["not", "a", "mapping"])


# ------------------------------------------------------------------- listing


def test_list_scenarios(tmp_path, flagship):
    _write(tmp_path, "name: broken\nvariants: [\n", "broken.yaml")
    _write(tmp_path, "- a list\n", "alist.yml")
    _write(tmp_path, "not yaml at all: [", "notes.txt")
    listed = list_scenarios(tmp_path)
    names = [name for name, _path, _desc in listed]
    assert names == sorted(names)
    assert "direct-vs-transit" in names
    entry = next(item for item in listed if item[0] == "direct-vs-transit")
    assert entry[1] == flagship
    assert entry[2].startswith("Direct private interconnect")
    broken = next(item for item in listed if item[1].name == "broken.yaml")
    assert "unreadable" in broken[2]
    assert any(item[1].name == "alist.yml" for item in listed)
    assert not any(item[1].name == "notes.txt" for item in listed)


def test_list_scenarios_missing_dir(tmp_path):
    assert list_scenarios(tmp_path / "nope") == []


# ------------------------------------------------- every shipped scenario loads

SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))


@pytest.mark.skipif(not SHIPPED, reason="no scenarios/*.yaml shipped yet")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
@pytest.mark.parametrize("quick", [False, True])
def test_shipped_scenarios_validate(path, quick):
    s = load_scenario(path, quick=quick)
    assert s.name == yaml.safe_load(path.read_text())["name"]
    for variant in s.variants:
        s.variant_links(variant)


def test_a_variant_measure_is_deep_merged_over_the_shared_one():
    from testbed.scenario import parse_scenario

    doc = {"name": "vm", "topology": "pair",
           "variants": [{"name": "a"}, {"name": "b", "measure": {"tcp": {"duration_s": 2}, "path": {}}}],
           "measure": {"ping": {"count": 3}, "tcp": {"duration_s": 9, "streams": 2}}}
    scenario = parse_scenario(doc)
    a, b = dict(scenario.steps(0)), dict(scenario.steps(1))
    assert a["tcp"].duration_s == 9 and "path" not in a
    assert b["tcp"].duration_s == 2 and b["tcp"].streams == 2  # merged, not replaced
    assert [kind for kind, _ in scenario.steps(1)] == ["ping", "tcp", "path"]


def test_a_bad_variant_measure_names_the_variant_field():
    from testbed.errors import InputError
    from testbed.scenario import parse_scenario

    doc = {"name": "vm", "topology": "pair", "variants": [{"name": "a", "measure": {"tcp": {"duraton_s": 2}}}],
           "measure": {"tcp": {}}}
    with pytest.raises(InputError) as info:
        parse_scenario(doc)
    assert info.value.field == "variants.0.measure.tcp.duraton_s", str(info.value)


def test_cost_section_is_validated_and_daily_volume_parsed():
    from testbed.errors import InputError
    from testbed.scenario import parse_scenario

    base = {"name": "c", "topology": "pair", "variants": [{"name": "a"}], "measure": {"ping": {}}}
    scenario = parse_scenario(dict(base, cost={"daily_volume": "2TB", "default_class": "interconnect"}))
    config, daily = scenario._cost
    assert daily == 2_000_000_000_000 and config.default_class == "interconnect"
    for bad, field in (({"daily_volume": "lots"}, "cost.daily_volume"), ({"default_class": "nope"}, "cost.default_class"),
                       ({"bogus": 1}, "cost.bogus")):
        with pytest.raises(InputError) as info:
            parse_scenario(dict(base, cost=bad))
        assert info.value.field == field, str(info.value)
