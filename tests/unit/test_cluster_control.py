"""Unit tests for labs across machines: ssh command lines, remote nodes, results, report.

No ssh is run and no kernel is touched: the command lines are checked as
argv lists, and the results and report are built from documents.
"""

from __future__ import annotations

import shlex

from testbed.cluster.control import agent_argv, node_remote
from testbed.cluster.machines import Machine
from testbed.cluster.results import cluster_results, underlay_checks, with_underlay
from testbed.cluster.ssh import Ssh, ssh_base
from testbed.cluster.slicing import cross_links
from testbed.lab.node import Node
from testbed.lab.paths import l3_path, path_profile
from testbed.lab.plan import make_plan
from testbed.report.document import render_report
from testbed.topologies import build_topology

LAB = "unit-ctl"


def _opts(argv, key):
    return [argv[i + 1] for i, item in enumerate(argv[:-1]) if item == "-o" and argv[i + 1].startswith(key)]


def test_ssh_uses_mininet_clusters_batch_mode_and_connection_sharing():
    from mininet.examples.cluster import RemoteMixin

    base = ssh_base()
    assert base[0] == "ssh" and "BatchMode=yes" in base and "BatchMode=yes" in RemoteMixin.sshbase
    assert "-tt" not in base and not any("ForwardAgent" in item for item in base)
    ssh = Ssh(Machine("m1", "192.0.2.10", key="/k/id"), "/tmp/ctl")
    master = ssh.options("master")
    assert _opts(master, "ControlMaster") == ["ControlMaster=yes"] and _opts(master, "ControlPersist")
    assert _opts(master, "ControlPath") == ["ControlPath=/tmp/ctl/m1"]
    argv = ssh.argv(["echo", "a b", "$HOME;x"])
    assert _opts(argv, "ControlMaster") == ["ControlMaster=no"]  # uses the master, never becomes one
    assert _opts(argv, "ControlPath") == ["ControlPath=/tmp/ctl/m1"]
    assert argv[argv.index("-i") + 1] == "/k/id"
    assert argv[-3:-1] == ["root@192.0.2.10", "--"]
    assert shlex.split(argv[-1]) == ["echo", "a b", "$HOME;x"]  # one quoted command line


def test_a_probe_opens_a_fresh_connection():
    argv = Ssh(Machine("m1", "192.0.2.10"), "/tmp/ctl").argv(["true"], shared=False)
    assert _opts(argv, "ControlPath") == ["ControlPath=none"]
    assert _opts(argv, "ControlMaster") == ["ControlMaster=no"]


def test_a_standin_is_reached_from_its_control_namespace_only_that_differs():
    real = Ssh(Machine("m1", "10.200.255.10"), "/c", "/kh").argv(["true"])
    onebox = Ssh(Machine("m1", "10.200.255.10", via_netns="tb.x._u"), "/c", "/kh").argv(["true"])
    assert onebox[:2] == ["nsenter", "--net=/run/netns/tb.x._u"]
    assert onebox[2:] == real
    assert "StrictHostKeyChecking=yes" in _opts(real, "StrictHostKeyChecking")


def _cluster(plan, where):
    return {"machines": [Machine("m1", "10.200.255.10").to_dict(),
                         Machine("m2", "10.200.255.11", standin="tb.x._mm2").to_dict()],
            "placement": where, "control_dir": "/tmp/ctl", "known_hosts": None,
            "state_dirs": {"m1": "/run/testbed/.machines/m1", "m2": "/s/m2"},
            "underlay": [{"a": "m1", "b": "m2", "mtu": 9216, "rtt_ms": 0.08, "tcp_mbps": 4000.0}],
            "ready": {"m1": {"ready_after_s": 0.2}}}


def _plan(path="direct"):
    links = {"site-fabric": "site-fabric", "direct": "direct-interconnect", "transit-hop": "internet-transit"}
    plan = make_plan(build_topology("two-clouds", {"path": path, "transit_hops": 2}), LAB, "10.200.0.0/16",
                     links, strict_links=False)
    where = {n: ("m2" if node.site == "gcp" else "m1") for n, node in plan.nodes.items()}
    return plan, where


def test_a_remote_node_runs_its_commands_over_ssh():
    plan, where = _plan()
    cluster = _cluster(plan, where)
    remote, machine = node_remote(cluster, "gcp-h1")
    node = Node("gcp-h1", f"tb.{LAB}.gcp-h1", remote=remote, machine=machine)
    argv = node.argv(["ping", "-c", "1", "10.200.0.1"])
    assert machine == "m2" and argv[-2] == "--" and "root@10.200.255.11" in argv
    assert shlex.split(argv[-1]) == ["ip", "netns", "exec", f"tb.{LAB}.gcp-h1", "ping", "-c", "1", "10.200.0.1"]
    assert Node("h1", "ns").argv(["true"]) == ["ip", "netns", "exec", "ns", "true"]


def test_agent_runs_the_machines_python_with_its_own_state_dir():
    plan, where = _plan()
    cluster = _cluster(plan, where)
    m2 = Machine("m2", "10.200.255.11", python="/opt/venv/bin/python")
    argv = agent_argv(m2, cluster, "build", LAB)
    assert argv[:3] == ["env", "TESTBED_STATE_DIR=/s/m2", "/opt/venv/bin/python"]
    assert argv[3:] == ["-m", "testbed.cluster.agent", "build", "--lab", LAB, "--machine", "m2"]


def test_predictions_add_the_underlay_rtt_once_per_crossing_link():
    plan, where = _plan("transit")
    l3 = l3_path(plan, "cw-h1", "gcp-h1")
    base = path_profile(plan, l3)
    pred = with_underlay(base, plan, l3, _cluster(plan, where))
    assert len(cross_links(plan, where)) == 1 and pred["crossing_links"] == 1
    assert pred["rtt_ms"] == base["rtt_ms"] + 0.08
    assert pred["owd_forward_ms"] == base["owd_forward_ms"] + 0.04


def test_a_link_faster_than_its_underlay_gets_a_verdict_saying_so():
    plan, where = _plan("direct")  # direct-interconnect: 10 Gbit/s
    cluster = _cluster(plan, where)
    [check] = underlay_checks(plan, cluster, scale=1.0)
    assert check["verdict"] == "warn" and "faster" in check["detail"]
    assert check["configured"] == 10000.0 and check["measured"] == 4000.0
    [scaled] = underlay_checks(plan, cluster, scale=4.0)  # 2.5 Gbit/s fits 4 Gbit/s
    assert scaled["verdict"] == "pass"
    cluster["underlay"][0]["tcp_mbps"] = None
    assert underlay_checks(plan, cluster)[0]["verdict"] == "skip"


def test_results_and_report_show_the_placement():
    plan, where = _plan()
    lab = cluster_results(_cluster(plan, where))
    assert lab["placement"] == where
    assert {m["name"]: m["standin"] for m in lab["machines"]} == {"m1": False, "m2": True}
    assert lab["machines"][0]["underlay"] == [{"to": "m2", "mtu": 9216, "rtt_ms": 0.08, "tcp_mbps": 4000.0}]
    text = render_report({"variants": [{"name": "direct", "lab": lab}]})
    assert "## Placement across machines" in text
    assert "cw-h1, cw-r1, cw-s1" in text and "gcp-h1, gcp-r1, gcp-s1" in text
    assert "m1 - m2" in text


def test_the_agent_never_removes_by_name_what_it_has_no_slice_state_for(tmp_path, monkeypatch, capsys):
    # one box: every stand-in sees every namespace in /run/netns; a 'down' for a lab
    # this machine holds no slice of must remove nothing (not even look)
    import json as _json

    from testbed.cluster import agent
    from testbed.lab import teardown

    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(teardown, "teardown", lambda lab: (_ for _ in ()).throw(AssertionError("teardown")))
    assert agent.main(["down", "--lab", "ghost", "--machine", "m1"]) == 0
    answer = _json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer == {"machine": "m1", "lab": "ghost", "namespaces": 0, "processes": 0}


def test_the_agent_answers_a_bad_slice_with_one_json_error(monkeypatch, capsys):
    import io
    import json as _json

    from testbed.cluster import agent

    monkeypatch.setattr("sys.stdin", io.StringIO("not json"))
    assert agent.main(["build", "--lab", "x1", "--machine", "m1"]) == 1
    answer = _json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["exit_code"] == 2 and "slice" in answer["error"]
