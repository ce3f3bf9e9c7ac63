"""Out-of-tree topologies (issue 17, item 6): ``path/to/mytopo.py[:name]``, as ``mn --custom`` loads them.

Oracle: files written here with Mininet's ``topos`` convention, and the
shipped ``topologies/pair.py`` loaded by path.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from testbed.errors import InputError
from testbed.lab.plan import make_plan
from testbed.scenario import parse_scenario
from testbed.topologies import build_topology, canonical_topology, topology_params

TRIANGLE = textwrap.dedent('''
    """triangle: three hosts around one switch (a test's own topology)."""
    from mininet.topo import Topo

    class Triangle(Topo):
        def build(self, hosts=3):
            s = self.addSwitch("s1")
            for i in range(1, hosts + 1):
                self.addHost(f"h{i}", site="a")
                self.addLink(f"h{i}", s, link="edge")

    topos = {"triangle": Triangle}
''')


@pytest.fixture
def topo_file(tmp_path) -> Path:
    path = tmp_path / "mytopo.py"
    path.write_text(TRIANGLE)
    return path


def test_a_file_topology_builds_with_its_parameters(topo_file):
    assert topology_params(str(topo_file)) == {"hosts": 3}
    topo = build_topology(f"{topo_file}:triangle", {"hosts": 4})
    plan = make_plan(topo, "x", "10.50.0.0/16", {"edge": {"rate": "100Mbit"}})
    assert sorted(n.name for n in plan.hosts()) == ["h1", "h2", "h3", "h4"]


def test_the_shipped_pair_loads_by_path_too():
    path = Path(__file__).resolve().parents[2] / "topologies" / "pair.py"
    assert sorted(build_topology(str(path), {}).hosts()) == ["h1", "h2"]


def test_a_bad_parameter_is_named(topo_file):
    with pytest.raises(InputError) as info:
        build_topology(str(topo_file), {"nodes": 2})
    assert info.value.field == "params.nodes"


@pytest.mark.parametrize("body,needle", [
    ("x = 1\n", "defines no 'topos' dict"),
    ("raise RuntimeError('boom')\n", "cannot load (RuntimeError: boom)"),
    (TRIANGLE + "topos['other'] = Triangle\n", "defines 2 topologies: name one"),
])
def test_a_broken_file_is_bad_input(tmp_path, body, needle):
    path = tmp_path / "bad.py"
    path.write_text(body)
    with pytest.raises(InputError) as info:
        topology_params(str(path))
    assert info.value.field == "topology" and needle in info.value.message


def test_a_missing_file_or_name(topo_file):
    with pytest.raises(InputError, match="no topology file"):
        topology_params(str(topo_file.parent / "nope.py"))
    with pytest.raises(InputError, match="has no topology 'square'"):
        topology_params(f"{topo_file}:square")


def test_a_scenario_names_its_topology_file_relative_to_itself(topo_file):
    doc = {"name": "custom", "topology": "mytopo.py:triangle", "variants": [{"name": "a"}],
           "links": {"edge": {"delay": "1ms"}}, "measure": {"ping": {"count": 2}}}
    scenario = parse_scenario(doc, source=str(topo_file.parent / "scenario.yaml"), topologies={"pair"})
    assert scenario.topology == f"{topo_file}:triangle"
    assert canonical_topology("mytopo.py", topo_file.parent) == str(topo_file)


def test_a_topology_name_that_is_neither_is_refused():
    doc = {"name": "x", "topology": "../evil;rm", "variants": [{"name": "a"}], "measure": {"ping": {}}}
    with pytest.raises(InputError) as info:
        parse_scenario(doc)
    assert info.value.field == "topology"
