"""``--set key=value`` overrides: parsing, paths, creation and every error."""

from __future__ import annotations

import pytest

from testbed import overrides
from testbed.errors import InputError
from testbed.overrides import apply_overrides, parse_override, set_dotted


def _doc():
    return {
        "name": "s",
        "params": {"hosts_per_site": 1},
        "variants": [
            {"name": "a", "params": {"path": "direct"}},
            {"name": "b", "params": {"path": "transit", "transit_hops": 4}},
        ],
        "host_sysctls": {"net.ipv4.tcp_rmem": "4096 131072 16777216"},
        "measure": {"path": None, "tcp": {"duration_s": 8}},
        "links": {"site-fabric": "site-fabric"},
    }


def test_all_is_exported():
    for name in overrides.__all__:
        assert hasattr(overrides, name)


@pytest.mark.parametrize(
    "text, value",
    [
        ("6", 6),
        ("2.5", 2.5),
        ("2ms", "2ms"),
        ("0.1%", "0.1%"),
        ("500Mbit", "500Mbit"),
        ("[a, b]", ["a", "b"]),
        ("{rate: 1Gbit}", {"rate": "1Gbit"}),
        ("true", True),
        ("'6'", "6"),
        ("", None),
        ("a=b", "a=b"),  # only the first '=' splits
    ],
)
def test_values_are_parsed_as_yaml(text, value):
    assert parse_override(f"k={text}") == ("k", value)


def test_list_index_and_int_value():
    result = apply_overrides(_doc(), ["variants.1.params.transit_hops=6"])
    assert result["variants"][1]["params"]["transit_hops"] == 6
    assert isinstance(result["variants"][1]["params"]["transit_hops"], int)


def test_input_is_not_modified():
    doc = _doc()
    result = apply_overrides(doc, ["variants.0.params.path=transit", "params.new=1"])
    assert doc["variants"][0]["params"]["path"] == "direct"
    assert "new" not in doc["params"]
    assert result["variants"][0]["params"]["path"] == "transit"


def test_missing_mapping_keys_are_created():
    result = apply_overrides(_doc(), ["measure.udp.bitrate=200Mbit", "fidelity.rtt_tolerance_pct=5"])
    assert result["measure"]["udp"] == {"bitrate": "200Mbit"}
    assert result["fidelity"] == {"rtt_tolerance_pct": 5}


def test_null_on_the_way_becomes_a_mapping():
    result = apply_overrides(_doc(), ["measure.path.max_hops=5"])
    assert result["measure"]["path"] == {"max_hops": 5}


def test_later_override_wins():
    result = apply_overrides(_doc(), ["measure.tcp.duration_s=3", "measure.tcp.duration_s=4"])
    assert result["measure"]["tcp"]["duration_s"] == 4


def test_whole_value_replaced_by_a_mapping():
    result = apply_overrides(_doc(), ["links.site-fabric={preset: site-fabric, mtu: 1500}"])
    assert result["links"]["site-fabric"] == {"preset": "site-fabric", "mtu": 1500}


def test_existing_dotted_key_is_matched_whole():
    result = apply_overrides(_doc(), ["host_sysctls.net.ipv4.tcp_rmem=4096 87380 6291456"])
    assert result["host_sysctls"] == {"net.ipv4.tcp_rmem": "4096 87380 6291456"}


def test_new_dotted_key_nests():
    # A new sysctl nests; the scenario model flattens nested host_sysctls back.
    result = apply_overrides(_doc(), ["host_sysctls.net.ipv4.tcp_ecn=1"])
    assert result["host_sysctls"]["net"] == {"ipv4": {"tcp_ecn": 1}}


def test_set_dotted_in_place():
    doc = {"a": [{"b": 1}]}
    set_dotted(doc, "a.0.b", 2)
    assert doc == {"a": [{"b": 2}]}


@pytest.mark.parametrize(
    "item, field, words",
    [
        ("no-equals-sign", "no-equals-sign", "key=value"),
        ("=5", "=5", "empty key"),
        ("  =5", "  =5", "empty key"),
        ("measure..tcp=1", "measure..tcp", "empty segment"),
        ("measure.tcp.=1", "measure.tcp.", "empty segment"),
        ("variants.2.name=c", "variants.2.name", "out of range"),
        ("variants.-1.name=c", "variants.-1.name", "not an index"),
        ("variants.first.name=c", "variants.first.name", "not an index"),
        ("name.x=1", "name.x", "cannot index into name"),
        ("params.hosts_per_site.x=1", "params.hosts_per_site.x", "cannot index into params.hosts_per_site"),
        ("links.site-fabric.rate=1Gbit", "links.site-fabric.rate", "str"),
        ("measure.tcp.duration_s=[1,", "measure.tcp.duration_s", "not valid YAML"),
    ],
)
def test_malformed_overrides_name_the_key(item, field, words):
    with pytest.raises(InputError) as info:
        apply_overrides(_doc(), [item])
    assert info.value.field == field
    assert words in info.value.message
    assert info.value.source == "--set"
    assert info.value.exit_code == 2


def test_source_is_passed_through():
    with pytest.raises(InputError) as info:
        apply_overrides(_doc(), ["bad"], source="up --set")
    assert info.value.source == "up --set"


def test_document_must_be_a_mapping():
    with pytest.raises(InputError):
        apply_overrides(["a"], ["0=1"])  # type: ignore[arg-type]
