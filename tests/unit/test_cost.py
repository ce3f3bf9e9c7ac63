"""Unit tests for testbed.cost, testbed/data/prices.yaml and the pure parts of
testbed.lab.counters: no root, no sockets.

Expected dollar figures are computed by hand in each test from FACTS.md's
prices (GCP $0.12/GiB first TiB, $0.11 to 10 TiB, $0.08 above; AWS $0.09/GB
first 10 TB, $0.085, $0.07, $0.05 above 150 TB; interconnect $0.02/GiB).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from testbed import cost
from testbed.errors import InputError, RunError
from testbed.lab import counters
from testbed.lab.plan import make_plan
from testbed.topologies import build_topology

GIB = 2**30
TIB = 2**40
GB = 10**9
TB = 10**12
DOCS = Path(__file__).resolve().parents[2] / "docs" / "cost.md"
REQUIRED_CLASSES = ("internet", "internet-gcp", "internet-aws", "internet-azure",
                    "interconnect", "vpn", "intra-site")


def _prices_text() -> str:
    folder, name = cost.PRICES_RESOURCE.split("/")
    return resources.files("testbed").joinpath(folder).joinpath(name).read_text("utf-8")


def _error(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return info.value


# ------------------------------------------------------------ the table


@pytest.mark.parametrize("module", [cost, counters])
def test_all_names_exist(module):
    for name in module.__all__:
        assert hasattr(module, name), name


def test_required_classes_and_defaults():
    prices = cost.load_prices()
    for name in REQUIRED_CLASSES:
        assert name in prices
    assert prices["internet"].tiers == prices["internet-gcp"].tiers
    assert prices["vpn"].tiers == prices["internet"].tiers
    assert prices["intra-site"].cost_usd(10 * TIB) == 0
    assert cost.default_link_classes() == {
        "direct-interconnect": "interconnect", "internet-transit": "internet",
        "vpn-tunnel": "vpn", "site-fabric": "intra-site"}


def test_units_are_exact():
    prices = cost.load_prices()
    gcp, aws = prices["internet-gcp"].tiers, prices["internet-aws"].tiers
    assert [t.unit_bytes for t in gcp] == [GIB] * 3
    assert [t.up_to_bytes for t in gcp] == [TIB, 10 * TIB, None]
    assert [t.unit_bytes for t in aws] == [GB] * 4
    assert [t.up_to_bytes for t in aws] == [10 * TB, 50 * TB, 150 * TB, None]
    assert [t.price_usd for t in aws] == [0.09, 0.085, 0.07, 0.05]
    assert prices["interconnect"].tiers[0].unit_bytes == GIB


def test_every_price_in_the_file_cites_its_source():
    """The comment block nearest above each price names FACTS or says [assumption]."""
    block, in_block = "", False
    for line in _prices_text().splitlines():
        text = line.strip()
        if re.match(r"^  [a-z][a-z-]*:$", line):  # a new class: its own citations
            block = ""
        if text.startswith("#"):
            block = (block + " " + text) if in_block else text
            in_block = True
            continue
        in_block = False
        if "price_per_" in text:
            assert "FACTS" in block or "[assumption]" in block, line
    # every [unconfirmed] figure of FACTS is marked so here too
    text = _prices_text()
    assert "0.02" in text and "[unconfirmed]" in text


def test_docs_list_every_class_and_default_price():
    text = DOCS.read_text()
    for name, price_class in cost.load_prices().items():
        assert f"`{name}`" in text, name
        for tier in price_class.tiers:
            assert f"${tier.price_usd:g}" in text or price_class.tiers[0].price_usd == 0, (name, tier)


# ------------------------------------------------------------ pricing


def test_one_and_a_half_tib_on_gcp_internet():
    expected = 1024 * 0.12 + 512 * 0.11  # first TiB at 0.12/GiB, the next half at 0.11
    assert expected == pytest.approx(179.2)
    assert cost.egress_cost_usd(1.5 * TIB, "internet-gcp") == pytest.approx(expected)
    assert cost.egress_cost_usd(1.5 * TIB, "internet") == pytest.approx(expected)


def test_flat_case_is_bytes_times_price():
    size_bytes = 123_456_789
    assert cost.egress_cost_usd(size_bytes, "interconnect") == pytest.approx(size_bytes * 0.02 / GIB)
    assert cost.egress_cost_usd(10 * GIB, "interconnect") == pytest.approx(0.2)
    assert cost.egress_cost_usd(0, "internet") == 0


def test_gb_and_gib_are_not_the_same():
    assert cost.egress_cost_usd(GB, "internet-aws") == pytest.approx(0.09)
    assert cost.egress_cost_usd(GIB, "internet-aws") == pytest.approx(0.09 * 1.073741824)
    assert cost.egress_cost_usd(GIB, "internet-gcp") == pytest.approx(0.12)
    assert cost.egress_cost_usd(GB, "internet-gcp") == pytest.approx(0.12 * GB / GIB)


def test_tier_boundaries():
    assert cost.egress_cost_usd(TIB, "internet") == pytest.approx(122.88)
    assert cost.egress_cost_usd(TIB + GIB, "internet") == pytest.approx(122.88 + 0.11)
    twelve = 1024 * 0.12 + 9 * 1024 * 0.11 + 2 * 1024 * 0.08
    assert cost.egress_cost_usd(12 * TIB, "internet") == pytest.approx(twelve)
    aws = 10_000 * 0.09 + 40_000 * 0.085 + 100_000 * 0.07 + 50_000 * 0.05  # 200 TB in GB
    assert cost.egress_cost_usd(200 * TB, "internet-aws") == pytest.approx(aws)


def test_bad_volume_and_class():
    assert _error(cost.egress_cost_usd, -1, "internet").field == "size_bytes"
    assert _error(cost.egress_cost_usd, True, "internet").field == "size_bytes"
    err = _error(cost.egress_cost_usd, 1, "carrier-pigeon")
    assert err.field == "link_class" and "internet" in err.message


def test_monthly_cost_applies_tiers_to_the_month():
    month = cost.monthly_cost(100 * GIB, "internet")
    assert month["monthly_bytes"] == 3000 * GIB
    assert month["usd"] == pytest.approx(1024 * 0.12 + 1976 * 0.11)  # 340.24, not 3000 x 0.12
    assert cost.monthly_cost(GIB, "interconnect", days=31)["usd"] == pytest.approx(31 * 0.02)
    assert _error(cost.monthly_cost, GIB, "internet", days=0).field == "days"
    assert _error(cost.monthly_cost, -5, "internet").field == "daily_bytes"


def test_scenario_cost_per_link_and_total():
    doc = cost.scenario_cost(
        {"wan1": 0.75 * TIB, "wan2": 0.75 * TIB, "direct": 10 * GIB, "fabric": 5 * GIB},
        {"wan1": "internet", "wan2": "internet", "direct": "interconnect", "fabric": "intra-site"})
    # the two internet links are one bill: 1.5 TiB crosses into the second tier
    assert doc["classes"]["internet"]["usd"] == pytest.approx(179.2)
    assert doc["links"]["wan1"] == {"egress_bytes": 0.75 * TIB, "class": "internet",
                                    "usd": pytest.approx(89.6)}
    assert doc["links"]["direct"]["usd"] == pytest.approx(0.2)
    assert doc["links"]["fabric"]["usd"] == 0
    assert doc["total_usd"] == pytest.approx(179.4)
    assert doc["total_bytes"] == 1.5 * TIB + 15 * GIB
    assert cost.scenario_cost({}, {})["total_usd"] == 0
    assert _error(cost.scenario_cost, {"x": 1}, {}).field == "class_by_link.x"


# ------------------------------------------------------------ overrides


def test_override_replaces_a_class_and_same_as_follows():
    prices = cost.apply_price_overrides({"internet": {"same_as": "internet-aws"}})
    assert cost.egress_cost_usd(GB, "internet", prices) == pytest.approx(0.09)
    assert cost.egress_cost_usd(GB, "vpn", prices) == pytest.approx(0.09)
    prices = cost.apply_price_overrides({
        "interconnect": {"price_per_gb": 0.01},
        "leased": {"tiers": [{"up_to": "100GB", "price_per_gb": 0.05},
                             {"up_to_bytes": 200 * GB, "price_per_gib": 0.02},
                             {"price_per_gb": 0}]},
    })
    assert cost.egress_cost_usd(GB, "interconnect", prices) == pytest.approx(0.01)
    assert cost.egress_cost_usd(300 * GB, "leased", prices) == pytest.approx(
        100 * 0.05 + 100 * GB / GIB * 0.02)


@pytest.mark.parametrize("overrides, field", [
    ("cheap", "prices"),
    ({"internet": 0.1}, "prices.internet"),
    ({"internet": {"price_per_gib": "cheap"}}, "prices.internet.price_per_gib"),
    ({"internet": {"price_per_gib": -0.1}}, "prices.internet.price_per_gib"),
    ({"internet": {"price_per_gb": True}}, "prices.internet.price_per_gb"),
    ({"internet": {"price_per_gib": 0.1, "price_per_gb": 0.1}}, "prices.internet"),
    ({"internet": {}}, "prices.internet"),
    ({"internet": {"price": 0.1}}, "prices.internet.price"),
    ({"internet": {"tiers": []}}, "prices.internet.tiers"),
    ({"internet": {"tiers": [{"up_to": "1TiB", "price_per_gib": 0.1}]}},
     "prices.internet.tiers[0].up_to"),
    ({"internet": {"tiers": [{"up_to": "1TiB", "price_per_gib": 0.1},
                             {"up_to": "2TiB", "price_per_gib": 0.05}]}},
     "prices.internet.tiers[1].up_to"),
    ({"internet": {"tiers": [{"up_to": "2TiB", "price_per_gib": 0.1},
                             {"up_to": "1TiB", "price_per_gib": 0.05},
                             {"price_per_gib": 0.01}]}},
     "prices.internet.tiers[1].up_to"),
    ({"internet": {"tiers": [{"price_per_gib": 0.1}, {"price_per_gib": 0.05}]}},
     "prices.internet.tiers[0].up_to"),
    ({"internet": {"tiers": [{"up_to": "1XB", "price_per_gib": 0.1}, {"price_per_gib": 0.05}]}},
     "prices.internet.tiers[0].up_to"),
    ({"internet": {"tiers": [{"up_to_bytes": True, "price_per_gib": 0.1}, {"price_per_gib": 0.05}]}},
     "prices.internet.tiers[0].up_to_bytes"),
    ({"internet": {"tiers": [{"up_to": "1TiB", "up_to_bytes": 5, "price_per_gib": 0.1},
                             {"price_per_gib": 0.05}]}},
     "prices.internet.tiers[0].up_to"),
    ({"internet": {"tiers": [{"up_to": "1TiB"}, {"price_per_gib": 0.05}]}},
     "prices.internet.tiers[0]"),
    ({"internet": {"tiers": [{"up_to": "1TiB", "price_per_gib": 0.1, "rate": 1}, {"price_per_gib": 0}]}},
     "prices.internet.tiers[0].rate"),
    ({"vpn": {"same_as": "satellite"}}, "prices.vpn.same_as"),
    ({"internet": {"same_as": "vpn"}}, "prices.internet.same_as"),
    ({"bad name": {"price_per_gib": 0}}, "prices.bad name"),
    ({"internet": {"price_per_gib": 0.1, "description": 5}}, "prices.internet.description"),
])
def test_override_errors_name_the_field(overrides, field):
    err = _error(cost.apply_price_overrides, overrides)
    assert err.field == field, str(err)


def test_shipped_table_is_not_changed_by_overrides():
    cost.apply_price_overrides({"internet": {"price_per_gib": 1.0}})
    assert cost.egress_cost_usd(GIB, "internet") == pytest.approx(0.12)


# ------------------------------------------------------------ config and links


def test_parse_config_defaults_and_overrides():
    config = cost.parse_config(None)
    assert config.default_class == "internet" and config.carrier_sites == ("transit",)
    config = cost.parse_config({"prices": {"metro-line": {"price_per_gib": 0.01}},
                                "link_classes": {"direct": "metro-line", "metro": "interconnect"},
                                "default_class": "internet-azure", "carrier_sites": []})
    assert cost.link_class("direct", "direct-interconnect", config) == "metro-line"
    assert cost.link_class("wan", "metro", config) == "interconnect"
    assert cost.link_class("wan", None, config) == "internet-azure"
    assert config.carrier_sites == ()


@pytest.mark.parametrize("value, field", [
    ([], "cost"),
    ({"price": {}}, "cost.price"),
    ({"prices": {"internet": {"price_per_gib": "x"}}}, "cost.prices.internet.price_per_gib"),
    ({"link_classes": {"direct": "satellite"}}, "cost.link_classes.direct"),
    ({"link_classes": ["direct"]}, "cost.link_classes"),
    ({"default_class": "satellite"}, "cost.default_class"),
    ({"carrier_sites": "transit"}, "cost.carrier_sites"),
])
def test_config_errors_name_the_field(value, field):
    assert _error(cost.parse_config, value).field == field


def test_link_class_by_name_then_preset_then_default():
    assert cost.link_class("direct", "direct-interconnect") == "interconnect"
    assert cost.link_class("transit-hop", "internet-transit") == "internet"
    assert cost.link_class("tunnel", "vpn-tunnel") == "vpn"
    assert cost.link_class("site-fabric", None) == "intra-site"  # the name is a rule too
    assert cost.link_class("wan", "metro") == "internet"
    assert cost.link_class("link", None) == "internet"


def test_link_presets_from_scenario_then_topology():
    presets = cost.link_presets("two-clouds", {"path": "transit"},
                                {"direct": "direct-interconnect", "transit-hop": {"rate": "1Gbit"}})
    assert presets == {"site-fabric": "site-fabric", "transit-hop": "internet-transit",
                       "direct": "direct-interconnect"}
    presets = cost.link_presets("two-clouds", {"path": "direct"}, {"direct": {"preset": "vpn-tunnel"}})
    assert presets["direct"] == "vpn-tunnel"
    assert cost.link_presets("pair", {}, {"link": {"rate": "100Mbit"}}) == {"link": None}


def _record(link_id, name, a, b, a_site, b_site, a_to_b, b_to_a):
    return {"id": link_id, "name": name, "a": a, "b": b, "a_site": a_site, "b_site": b_site,
            "wire": None, "a_to_b_bytes": a_to_b, "b_to_a_bytes": b_to_a,
            "a_to_b_packets": 0, "b_to_a_packets": 0}


TRANSIT_RUN = {  # cw sends 3 GiB to gcp, gcp sends 1 GiB back, over two transit hops
    0: _record(0, "site-fabric", "cw-h1", "cw-s1", "cw", "cw", 3 * GIB, GIB),
    1: _record(1, "transit-hop", "cw-r1", "tr1", "cw", "transit", 3 * GIB, GIB),
    2: _record(2, "transit-hop", "tr1", "gcp-r1", "transit", "gcp", 3 * GIB, GIB),
    3: _record(3, "site-fabric", "gcp-h1", "gcp-s1", "gcp", "gcp", GIB, 3 * GIB),
}


def test_egress_counts_each_site_once_over_a_transit_chain():
    counted = cost.egress_bytes(TRANSIT_RUN)
    assert counted == {
        1: {"egress_bytes": 3 * GIB, "a_to_b_counted": True, "b_to_a_counted": False},
        2: {"egress_bytes": GIB, "a_to_b_counted": False, "b_to_a_counted": True},
    }
    direct = {0: _record(0, "direct", "cw-r1", "gcp-r1", "cw", "gcp", 3 * GIB, GIB)}
    assert cost.egress_bytes(direct)[0]["egress_bytes"] == 4 * GIB  # both sides' egress
    unknown = {0: _record(0, "wan", "x", "y", None, None, 5, 7)}
    assert cost.egress_bytes(unknown)[0]["egress_bytes"] == 12


def test_traffic_cost_of_a_transit_run():
    presets = {"site-fabric": "site-fabric", "transit-hop": "internet-transit"}
    doc = cost.traffic_cost(TRANSIT_RUN, presets)
    assert set(doc["links"]) == {"transit-hop[cw-r1-tr1]", "transit-hop[tr1-gcp-r1]"}
    assert doc["total_bytes"] == 4 * GIB
    assert doc["total_usd"] == pytest.approx(4 * 0.12)
    assert doc["currency"] == "USD"
    entry = doc["links"]["transit-hop[cw-r1-tr1]"]
    assert (entry["class"], entry["usd"], entry["a"], entry["b"]) == (
        "internet", pytest.approx(0.36), "cw-r1", "tr1")
    direct = {0: _record(0, "direct", "cw-r1", "gcp-r1", "cw", "gcp", 3 * GIB, GIB)}
    assert cost.traffic_cost(direct, {"direct": "direct-interconnect"})["total_usd"] == \
        pytest.approx(4 * 0.02)


# ------------------------------------------------------------ counters, without a kernel


def test_link_bytes_reads_wire_ports_and_node_veths(monkeypatch):
    plan = make_plan(build_topology("two-clouds", {"path": "direct"}), "unit-cnt", "10.200.0.0/16",
                     {"direct": "direct-interconnect"})
    asked = {}

    def fake_stats(netns, ifnames):
        asked[netns] = list(ifnames)
        return {i: {"rx_bytes": 100, "tx_bytes": 200, "rx_packets": 1, "tx_packets": 2}
                for i in ifnames}

    monkeypatch.setattr(counters, "_read_stats", fake_stats)
    result = counters.link_bytes(plan)
    assert set(result) == {l.id for l in plan.links}
    for link in plan.links:
        record = result[link.id]
        assert (record["a"], record["b"], record["name"]) == (link.a, link.b, link.name)
        if link.wire:  # what the wire received from each end
            assert asked[link.wire] == ["port-a", "port-b"]
            assert (record["a_to_b_bytes"], record["b_to_a_packets"]) == (100, 1)
        else:  # what each node sent
            assert link.a_intf in asked[plan.nodes[link.a].netns]
            assert (record["a_to_b_bytes"], record["b_to_a_packets"]) == (200, 2)
    direct = next(l for l in plan.links if l.name == "direct")
    assert direct.wire and (result[direct.id]["a_site"], result[direct.id]["b_site"]) == ("cw", "gcp")
    # the lab document's plan gives the same answer
    assert counters.link_bytes(plan.to_dict()) == result
    assert _error(counters.link_bytes, 42).field == "plan_or_lab"


def test_delta_subtracts_and_refuses_going_backwards():
    before = {0: _record(0, "link", "h1", "h2", "a", "b", 100, 50)}
    after = {0: _record(0, "link", "h1", "h2", "a", "b", 5100, 2050)}
    moved = counters.delta(before, after)
    assert (moved[0]["a_to_b_bytes"], moved[0]["b_to_a_bytes"]) == (5000, 2000)
    assert moved[0]["name"] == "link"
    with pytest.raises(RunError):
        counters.delta(after, before)
    with pytest.raises(RunError):
        counters.delta(before, {1: after[0]})
