"""set / show / capture / graph without root: plans from topologies, text checked, argument errors.

Oracles: the plan made from the topology (its link names, ends and wires),
the profile strings the user gave, argparse-free expectations written here
(which field an error must name, exit 2).
"""

from __future__ import annotations

import json

import pytest

from testbed.capture import resolve_target, tcpdump_argv
from testbed.cli import main
from testbed.errors import InputError
from testbed.graph import graph_doc, link_label, to_dot, to_mermaid
from testbed.lab.live import IN_FORCE_KEY, in_force, parse_set_items, render_show, show_doc
from testbed.lab.plan import WIRE_PORT_A, make_plan
from testbed.report.document import render_report
from testbed.report.plotting import make_plots
from testbed.topologies import build_topology

BLOCK = "10.0.0.0/8"


def _plan(topology="pair", params=None, links=None, lab="lab1"):
    return make_plan(build_topology(topology, params or {}), lab, BLOCK, links or {}, strict_links=False)


PAIR_LINKS = {"link": {"rate": "1Gbit", "delay": "10ms", "loss": "0.1%"}}


# ------------------------------------------------------------------- graph


def test_dot_has_a_cluster_per_site_and_labelled_links():
    plan = _plan("two-clouds", {"path": "transit", "transit_hops": 2})
    dot = to_dot(graph_doc(plan), "two-clouds")
    assert dot.startswith('graph "two-clouds" {') and dot.rstrip().endswith("}")
    assert 'subgraph "cluster_cw"' in dot and 'subgraph "cluster_gcp"' in dot
    assert '"cw-r1" [shape=circle' in dot and '"cw-s1" [shape=hexagon' in dot and '"cw-h1" [shape=box' in dot
    # the internet-transit preset: 1Gbit, 5ms, 0.05% per hop
    assert dot.count('[label="transit-hop: 1Gbit 5ms loss 0.05%"]') == 3
    assert '"cw-h1" -- "cw-s1" [label="site-fabric: unshaped"]' in dot
    # every link of the plan is an edge
    assert dot.count(" -- ") == len(plan.links)


def test_mermaid_has_subgraphs_safe_ids_and_labels():
    text = to_mermaid(graph_doc(_plan("pair", links=PAIR_LINKS)))
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  subgraph site_0["a"]' in lines and '  subgraph site_1["b"]' in lines
    assert '  n_h1 ---|"link: 1Gbit 10ms loss 0.1%"| n_h2' in lines
    text = to_mermaid(graph_doc(_plan("two-clouds")))
    assert 'n_cw_h1["cw-h1"]' in text and 'n_cw_r1(("cw-r1"))' in text and 'n_cw_s1{{"cw-s1"}}' in text
    assert "cw-h1 ---" not in text  # ids never carry the dash mermaid would misread


def test_asymmetric_link_label_names_both_directions():
    links = {"link": {"rate": "1Gbit", "delay": "10ms", "forward": {"delay": "30ms"}}}
    doc = graph_doc(_plan("pair", links=links))
    assert link_label(doc["links"][0]) == "fwd 1Gbit 30ms / rev 1Gbit 10ms"


def test_graph_cli_from_a_topology(tmp_path, capsys):
    assert main(["graph", "pair"]) == 0
    assert '"h1" -- "h2" [label="link: unshaped"]' in capsys.readouterr().out
    out = tmp_path / "star.png"
    assert main(["graph", "star", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mmd = tmp_path / "x.mmd"
    assert main(["graph", "multicloud", "-o", str(mmd)]) == 0
    assert mmd.read_text().startswith("flowchart LR")


@pytest.mark.parametrize("argv, field", [
    (["graph", "pair", "--format", "svg"], "format"),
    (["graph", "no-such-topology"], "source"),
    (["graph", "pair", "--format", "png"], "o"),
    (["graph", "pair", "-o", "/nonexistent-dir/x.dot"], "o"),
    (["set", "lab1"], "items"),
    (["set", "Bad.Name", "link.delay=1ms"], "lab"),
    (["capture", "lab1", "link", "-c", "0"], "count"),
])
def test_argument_errors_exit_2_naming_the_field(argv, field, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"testbed: error: {field}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


# ------------------------------------------------------------------- set items


def test_set_items_lay_over_the_profile_in_force():
    plan = _plan("pair", links=PAIR_LINKS)
    [change] = parse_set_items(["link.delay=30ms"], plan, {}, "userspace")
    assert change.after.forward.delay_ms == 30 and change.after.reverse.delay_ms == 30
    assert change.after.forward.rate_bps == 1_000_000_000 and change.after.forward.loss_pct == 0.1
    now = {change.link.id: change.after}
    [second] = parse_set_items(["link.forward.loss=2%"], plan, now, "userspace")
    assert (second.after.forward.delay_ms, second.after.forward.loss_pct) == (30, 2)
    assert (second.after.reverse.delay_ms, second.after.reverse.loss_pct) == (30, 0.1)
    [back] = parse_set_items(["link=configured"], plan, {0: second.after}, "userspace")
    assert back.after == plan.links[0].spec
    assert parse_set_items(["link.delay=10ms"], plan, {}, "userspace") == []  # nothing differs


@pytest.mark.parametrize("items, field, words", [
    (["link.delay=30ms", "nope.delay=1ms"], "nope.delay", "no link named 'nope'"),
    (["link.delay=30ms", "link.mtu=9000"], "link.mtu", "cannot change at runtime"),
    (["link.delay=soon"], "link.delay", "invalid time"),
    (["link.forward.colour=red"], "link.forward.colour", "expected forward.FIELD"),
    (["link.speed=1Gbit"], "link.speed", "unknown field"),
    (["link=3ms"], "link", "configured"),
    (["link.queue=100"], "link.queue", "cannot change at runtime"),
    (["novalue"], "novalue", "key=value"),
])
def test_bad_items_are_refused_before_anything_naming_the_item(items, field, words):
    plan = _plan("pair", links=PAIR_LINKS)
    with pytest.raises(InputError) as info:
        parse_set_items(items, plan, {}, "userspace")
    assert info.value.field == field and words in info.value.message
    assert info.value.exit_code == 2


def test_a_direction_built_without_impairment_cannot_get_one():
    plan = _plan("pair", links={"link": {"rate": "1Gbit"}})
    with pytest.raises(InputError, match="no delay line to change"):
        parse_set_items(["link.delay=5ms"], plan, {}, "userspace")
    [change] = parse_set_items(["link.rate=200Mbit"], plan, {}, "userspace")
    assert change.after.forward.rate_bps == 200_000_000


def test_a_shared_link_name_changes_every_link_of_that_name():
    plan = _plan("two-clouds", {"path": "transit", "transit_hops": 2})
    changes = parse_set_items(["transit-hop.delay=9ms"], plan, {}, "netem")
    assert len(changes) == 3 and all(c.after.forward.delay_ms == 9 for c in changes)


# ------------------------------------------------------------------- show


def test_show_reports_the_profile_in_force_per_direction():
    plan = _plan("pair", links=PAIR_LINKS)
    [change] = parse_set_items(["link.forward.delay=40ms"], plan, {}, "userspace")
    doc = {"lab": "lab1", "topology": "pair", "status": "up", "backend": "userspace", "block": BLOCK,
           "plan": plan.to_dict(), IN_FORCE_KEY: {"0": change.after.to_user()}}
    assert in_force(doc, plan) == {0: change.after}
    view = show_doc(doc, plan)
    json.dumps(view)
    [link] = view["links"]
    assert link["changed"] and link["forward"]["delay"] == "40ms" and link["reverse"]["delay"] == "10ms"
    assert link["configured"]["forward"]["delay"] == "10ms" and link["a"] == "h1:h1-eth0"
    assert [n["name"] for n in view["nodes"]] == ["h1", "h2"]
    text = render_show(view)
    rows = [l.split() for l in text.splitlines()]
    assert ["link*", "h1:h1-eth0", "->", "h2:h2-eth0", "forward", "1Gbit", "40ms", "-", "0.1%"] == rows[-2][:9]
    assert ["link*", "h2:h2-eth0", "->", "h1:h1-eth0", "reverse", "1Gbit", "10ms"] == rows[-1][:7]
    assert any(r[:3] == ["h1", "host", "a"] for r in rows)


# ------------------------------------------------------------------- capture


def test_capture_targets():
    plan = _plan("two-clouds", {"path": "transit", "transit_hops": 1})
    direct_plan = _plan("two-clouds")
    direct = resolve_target(direct_plan, "direct")
    wire = next(l.wire for l in direct_plan.links if l.name == "direct")
    assert (direct.netns, direct.ifname) == (wire, WIRE_PORT_A)
    fabric_plan = _plan("pair")  # unshaped: no wire, the first node's interface
    assert (resolve_target(fabric_plan, "link").netns, resolve_target(fabric_plan, "link").ifname) == \
        ("tb.lab1.h1", "h1-eth0")
    node = resolve_target(plan, "cw-r1:cw-r1-eth1")
    assert (node.netns, node.ifname) == ("tb.lab1.cw-r1", "cw-r1-eth1")
    for target, words in (("transit-hop", "2 links are named"), ("cw-r1:eth9", "no interface"),
                          ("zz:eth0", "no node"), ("nothing", "neither a link")):
        with pytest.raises(InputError, match=words) as info:
            resolve_target(plan, target)
        assert info.value.field == "target"


def test_tcpdump_argv_is_a_list_in_the_namespace():
    plan = _plan("two-clouds")
    target = resolve_target(plan, "direct")
    argv = tcpdump_argv(target, 5, "tcp port 5201 and host 10.0.0.1")
    assert argv[:5] == ["ip", "netns", "exec", target.netns, "tcpdump"]
    assert argv[argv.index("-i") + 1] == WIRE_PORT_A and argv[argv.index("-w") + 1] == "-"
    assert argv[argv.index("-c") + 1] == "5" and "--immediate-mode" in argv
    assert argv[-1] == "tcp port 5201 and host 10.0.0.1"  # one element: no shell word splitting
    assert "-c" not in tcpdump_argv(target, None, None) and tcpdump_argv(target, None, None)[-1] == "-"


# ------------------------------------------------------------------- report


def test_report_has_each_variants_lab_picture(tmp_path):
    variants = []
    for name, params in (("direct", {}), ("transit", {"path": "transit", "transit_hops": 1})):
        plan = _plan("two-clouds", params)
        variants.append({"name": name, "complete": True, "errors": [],
                         "lab": {"nodes": len(plan.nodes), "graph": graph_doc(plan)}})
    results = {"scenario": "x", "complete": True, "errors": [], "variants": variants}
    plots = make_plots(results, tmp_path)
    names = sorted(p.name for p in plots)
    assert "lab_direct.png" in names and "lab_transit.png" in names
    assert (tmp_path / "lab_transit.png").read_bytes()[:4] == b"\x89PNG"
    report = render_report(results, plots, base_dir=tmp_path)
    assert "![lab direct](lab_direct.png)" in report and "![lab transit](lab_transit.png)" in report


def test_results_schema_accepts_the_lab_graph():
    from testbed.results import load_schema

    jsonschema = pytest.importorskip("jsonschema")
    schema = load_schema()
    plan = _plan("two-clouds", {"path": "transit", "transit_hops": 1})
    variant = {"name": "v", "complete": True, "errors": [],
               "lab": {"block": BLOCK, "backend": "userspace", "nodes": 7, "scale": 1.0, "up_s": 0.5,
                       "graph": graph_doc(plan)}}
    doc_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/variant"}
    jsonschema.validate(variant, doc_schema)
    variant["lab"]["graph"]["nodes"][0]["role"] = "gpu"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(variant, doc_schema)
