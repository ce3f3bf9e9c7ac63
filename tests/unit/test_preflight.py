"""testbed.preflight: a scenario is checked against its topology and tools before any lab."""

import pytest

from testbed.errors import EnvironmentProblem, InputError
from testbed.preflight import check_tools, check_topology_fit
from testbed.scenario import parse_scenario


def _scenario(**extra):
    doc = {"name": "pf", "topology": "two-clouds",
           "variants": [{"name": "direct", "params": {"path": "direct"}},
                        {"name": "transit", "params": {"path": "transit"}}],
           "measure": {"ping": {"count": 1}}}
    doc.update(extra)
    return parse_scenario(doc, source="pf.yaml")


def test_a_fitting_scenario_passes():
    check_topology_fit(_scenario(links={"transit-hop": "internet-transit", "direct": "direct-interconnect"},
                                 endpoints={"src": "cw-h1", "dst": "gcp-h1"}))


def test_a_link_present_in_only_one_variant_is_allowed_at_scenario_level():
    check_topology_fit(_scenario(links={"transit-hop": {"delay": "5ms"}}))


@pytest.mark.parametrize("extra,field,words", [
    ({"params": {"bogus": 1}}, "params.bogus", "no parameter 'bogus'"),
    ({"links": {"trnasit-hop": {"delay": "5ms"}}}, "links.trnasit-hop", "no link named"),
    ({"endpoints": {"src": "h9", "dst": "gcp-h1"}}, "endpoints.src", "not a host"),
    ({"endpoints": {"src": "cw-h1", "dst": "cw-r"}}, "endpoints.dst", "not a host"),
])
def test_misfits_name_their_field(extra, field, words):
    with pytest.raises(InputError) as info:
        check_topology_fit(_scenario(**extra))
    assert info.value.field == field, str(info.value)
    assert words in info.value.message and info.value.source == "pf.yaml"


def test_variant_fields_are_named_by_variant():
    doc = {"name": "pf", "topology": "two-clouds",
           "variants": [{"name": "a", "params": {"path": "direct"}},
                        {"name": "b", "params": {"path": "direct", "hops": 3},
                         "links": {"transit-hop": {"delay": "1ms"}}}],
           "measure": {"ping": {"count": 1}}}
    with pytest.raises(InputError) as info:
        check_topology_fit(parse_scenario(doc))
    assert info.value.field == "variants.1.params.hops"
    doc["variants"][1]["params"].pop("hops")
    with pytest.raises(InputError) as info:
        check_topology_fit(parse_scenario(doc))
    assert info.value.field == "variants.1.links.transit-hop"


def test_a_missing_tool_is_an_environment_problem(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    scenario = parse_scenario({"name": "pf", "topology": "pair", "variants": [{"name": "a"}],
                               "measure": {"tcp": {"duration_s": 1}}})
    with pytest.raises(EnvironmentProblem) as info:
        check_tools(scenario)
    assert "iperf3" in str(info.value)
