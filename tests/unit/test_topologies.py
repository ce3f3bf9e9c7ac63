"""Unit tests for the shipped topologies (package ``testbed.topologies``).

Each topology file must work on its own as a Mininet custom file
(``mn --custom FILE --topo NAME``): it is loaded here the way ``mn`` loads it
(``exec`` into a fresh dict, no ``testbed`` import) and built through
Mininet's ``Topo`` API.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict

import pytest
from mininet.topo import Topo
from mininet.util import buildTopo

import testbed.topologies as topologies_pkg
from testbed.errors import InputError
from testbed.topologies import TOPOLOGIES, build_topology, describe, topology_params

TOPO_DIR = Path(topologies_pkg.__file__).resolve().parent
TOPO_FILES = sorted(p for p in TOPO_DIR.glob("*.py") if p.name != "__init__.py")


def _load_like_mn(path: Path) -> Dict[str, object]:
    """What ``mn --custom path`` does: exec the file into a fresh namespace."""
    customs: Dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), customs, customs)  # noqa: S102
    return customs


def _counts(topo: Topo):
    return len(topo.hosts()), len(topo.switches()), len(topo.links())


def test_all_names_exist():
    for name in topologies_pkg.__all__:
        assert hasattr(topologies_pkg, name), name


def test_there_are_topology_files():
    assert {p.name for p in TOPO_FILES} >= {"pair.py", "two_clouds.py"}


@pytest.mark.parametrize("path", TOPO_FILES, ids=lambda p: p.name)
def test_file_is_a_mininet_custom_file(path):
    customs = _load_like_mn(path)
    topos = customs.get("topos")
    assert isinstance(topos, dict) and topos, f"{path.name} has no 'topos' dict"
    for name, cls in topos.items():
        assert isinstance(cls, type) and issubclass(cls, Topo), f"{name}: {cls!r} is not a Topo"
        topo = buildTopo(topos, name)  # as 'mn --topo NAME' builds it
        assert topo.nodes(), f"{name} builds an empty topology"


@pytest.mark.parametrize("path", TOPO_FILES, ids=lambda p: p.name)
def test_file_imports_nothing_from_testbed(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            assert node.level == 0, f"{path.name}: relative import"
        else:
            continue
        for name in names:
            assert not name.startswith("testbed"), f"{path.name} imports {name}"


def test_registry_is_every_files_topos():
    merged = {}
    for path in TOPO_FILES:
        merged.update(_load_like_mn(path)["topos"])
    assert sorted(TOPOLOGIES) == sorted(merged)
    for name, cls in TOPOLOGIES.items():
        assert cls.__name__ == merged[name].__name__


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_describe_gives_a_line(name):
    line = describe(name)
    assert line and "\n" not in line


def test_pair_counts():
    topo = build_topology("pair", {})
    assert _counts(topo) == (2, 0, 1)
    assert sorted(topo.hosts()) == ["h1", "h2"]
    (a, b, info), = topo.links(withInfo=True)
    assert info["link"] == "link"


@pytest.mark.parametrize(
    "params,expected",
    [
        # hosts: 2 routers + hosts; switches 2; links: per site (router + hosts), then the path
        ({}, (4, 2, 5)),
        ({"hosts_per_site": 3}, (8, 2, 9)),
        ({"path": "transit"}, (8, 2, 9)),  # 4 transit routers, 5 transit hops
        ({"path": "transit", "transit_hops": 1, "hosts_per_site": 2}, (7, 2, 8)),
        ({"path": "transit", "transit_hops": 16}, (20, 2, 21)),
    ],
)
def test_two_clouds_counts(params, expected):
    assert _counts(build_topology("two-clouds", params)) == expected


def test_two_clouds_mn_style_string_params():
    # 'mn --topo two-clouds,path=transit,transit_hops=2': values arrive via makeNumeric
    topo = buildTopo(TOPOLOGIES, "two-clouds,path=transit,transit_hops=2")
    assert sorted(h for h in topo.hosts() if h.startswith("tr")) == ["tr1", "tr2"]


def test_two_clouds_node_info():
    topo = build_topology("two-clouds", {"path": "transit", "sites": ["aws", "az"]})
    assert topo.nodeInfo("aws-r1")["role"] == "router"
    assert topo.nodeInfo("az-h1")["site"] == "az"
    assert topo.nodeInfo("tr3")["site"] == "transit"
    assert topo.isSwitch("aws-s1")
    profiles = {info["link"]: info.get("profile") for _a, _b, info in topo.links(withInfo=True)}
    assert profiles == {"site-fabric": "site-fabric", "transit-hop": "internet-transit"}


def test_topology_params():
    assert topology_params("pair") == {}
    assert topology_params("two-clouds") == {
        "hosts_per_site": 1, "path": "direct", "transit_hops": 4, "sites": ("cw", "gcp")}


# ----------------------------------------------------------- bad input


def test_unknown_topology():
    with pytest.raises(InputError) as info:
        build_topology("nosuch", {})
    assert info.value.field == "topology"
    assert "pair" in info.value.message  # lists the known ones


@pytest.mark.parametrize(
    "name,key", [("pair", "hosts_per_site"), ("two-clouds", "bogus"), ("two-clouds", "Path")]
)
def test_unknown_param_names_the_key(name, key):
    with pytest.raises(InputError) as info:
        build_topology(name, {key: 1})
    assert info.value.field == f"params.{key}"


def test_unknown_param_uses_the_given_field_prefix():
    with pytest.raises(InputError) as info:
        build_topology("two-clouds", {"bogus": 1}, field="variants.0.params")
    assert info.value.field == "variants.0.params.bogus"


@pytest.mark.parametrize(
    "params,key",
    [
        ({"path": "bogus"}, "path"),
        ({"hosts_per_site": 0}, "hosts_per_site"),
        ({"hosts_per_site": 1000}, "hosts_per_site"),
        ({"hosts_per_site": "2"}, "hosts_per_site"),
        ({"transit_hops": 0}, "transit_hops"),
        ({"transit_hops": 17}, "transit_hops"),
        ({"transit_hops": 2.5}, "transit_hops"),
        ({"sites": ["cw"]}, "sites"),
        ({"sites": ["cw", "cw"]}, "sites"),
        ({"sites": ["a", "b", "c"]}, "sites"),
    ],
)
def test_bad_param_value_names_the_param(params, key):
    with pytest.raises(InputError) as info:
        build_topology("two-clouds", params)
    assert info.value.field == f"params.{key}"
    assert info.value.exit_code == 2


@pytest.mark.parametrize("key", ["hosts_per_site", "transit_hops"])
def test_boolean_counts_rejected(key):
    with pytest.raises(InputError) as info:
        build_topology("two-clouds", {"path": "transit", key: True})
    assert info.value.field == f"params.{key}"


def test_sites_as_a_string_rejected():
    with pytest.raises(InputError) as info:
        build_topology("two-clouds", {"sites": "ab"})
    assert info.value.field == "params.sites"


def test_star_above_one_bridge_uses_leaf_switches_under_a_spine():
    from testbed.lab.plan import make_plan
    from testbed.topologies import build_topology

    small = build_topology("star", {"hosts": 1000})
    assert small.switches() == ["s1"]
    big = build_topology("star", {"hosts": 1024})
    assert sorted(big.switches()) == ["s0", "s1", "s2"]
    ports = {s: sum(1 for a, b in big.links() if s in (a, b)) for s in big.switches()}
    assert ports == {"s0": 2, "s1": 1001, "s2": 25}  # every bridge under the 1023-port limit
    plan = make_plan(big, "x", "10.80.0.0/16", {})
    assert len(plan.segments) == 1  # one L2 segment, one subnet, no routes needed
    assert all(not node.routes for node in plan.nodes.values())
    with pytest.raises(InputError):
        build_topology("star", {"hosts": 4097})


@pytest.mark.parametrize("params,words", [
    ({"sites": ["cw"]}, "2 to 8"),
    ({"sites": ["cw", "cw"]}, "different"),
    ({"sites": ["coreweave", "gcp"]}, "1-6 characters"),
    ({"paths": {"cw-zz": "direct"}}, "not a pair"),
    ({"paths": {"cw-gcp": "fibre"}}, "path type"),
    ({"sites": ["a", "b", "c"], "paths": {"a-b": "none", "a-c": "none"}}, "no path"),
    ({"gpus": {"cw": "B200"}}, "GPU type"),
    ({"hosts_per_site": {"xx": 2}}, "not one of the sites"),
])
def test_multicloud_refuses_bad_parameters_naming_them(params, words):
    from testbed.topologies import build_topology

    with pytest.raises(InputError) as info:
        build_topology("multicloud", params)
    assert words in info.value.message and info.value.field.startswith("params"), str(info.value)


def test_multicloud_paths_make_the_links_and_routes_they_promise():
    from testbed.lab.plan import make_plan
    from testbed.topologies import build_topology

    topo = build_topology("multicloud", {"sites": ["cw", "gcp", "aws"], "transit_hops": 2,
                                          "paths": {"gcp-cw": "direct+transit", "cw-aws": "vpn", "gcp-aws": "none"},
                                          "gpus": {"aws": "A100"}})
    names = {info["link"] for _a, _b, info in topo.links(withInfo=True)}
    assert names == {"fabric-cw", "fabric-gcp", "fabric-aws", "cw-gcp", "cw-gcp-transit", "cw-aws"}
    assert topo.nodeInfo("aws-h1")["gpu"] == "A100" and topo.nodeInfo("cw-h2")["gpu"] == "H100"
    plan = make_plan(topo, "x", "10.80.0.0/16", {})
    from testbed.lab.paths import l3_path

    assert l3_path(plan, "gcp-h1", "aws-h1") == ["gcp-h1", "gcp-r", "cw-r", "aws-r", "aws-h1"]  # via cw
    assert l3_path(plan, "cw-h1", "gcp-h1") == ["cw-h1", "cw-r", "gcp-r", "gcp-h1"]  # direct preferred


@pytest.mark.parametrize("topology,params", [
    ("two-clouds", {"hosts_per_site": 512}),
    ("multicloud", {"sites": ["cw", "gcp"], "hosts_per_site": 512, "paths": {"cw-gcp": "direct"}}),
])
def test_sites_take_512_hosts_and_plan(topology, params):
    """Issue 17, item 5: real cluster sizes per site (the cap was 99)."""
    from testbed.lab.plan import make_plan

    topo = build_topology(topology, params)
    plan = make_plan(topo, "x", "10.60.0.0/16", {})
    assert len(plan.hosts()) == 1024
    assert max(len(i.name) for n in plan.nodes.values() for i in n.intfs) <= 15


def test_a_site_name_too_long_for_its_host_count_is_named():
    """'abcdef-h512' cannot carry '-eth0' in 15 characters: the plan names the node."""
    from testbed.lab.plan import make_plan

    topo = build_topology("multicloud", {"sites": ["abcdef", "gcp"], "hosts_per_site": 512,
                                         "paths": {"abcdef-gcp": "direct"}})
    with pytest.raises(InputError) as info:
        make_plan(topo, "x", "10.60.0.0/16", {})
    assert "abcdef-h" in info.value.field and "15" in info.value.message


def test_a_site_holds_at_most_999_hosts():
    with pytest.raises(InputError) as info:
        build_topology("two-clouds", {"hosts_per_site": 1000})
    assert info.value.field == "params.hosts_per_site" and "1023 ports" in info.value.message
