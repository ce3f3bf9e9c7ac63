"""``testbed doctor``'s pure parts: problems() and render() on hand-made reports."""

from __future__ import annotations

import copy
import json

import pytest

from testbed import doctor
from testbed.doctor import (
    FEATURES,
    QDISC_KINDS,
    REQUIRED_TOOLS,
    problems,
    render,
    tool_version,
)
from testbed.errors import EnvironmentProblem


def check(ok, detail="", hint=""):
    return {"ok": ok, "detail": detail, "hint": hint}


def tool(ok, version="", detail="", hint="", required=False):
    return {"ok": ok, "version": version, "detail": detail, "hint": hint, "required": required}


def healthy_report() -> dict:
    """Like this development machine: everything but netem, fq and OVS."""
    qdiscs = {kind: check(True, f"{kind} qdisc accepted by the kernel") for kind in QDISC_KINDS}
    qdiscs["netem"] = check(
        False,
        "kernel has no netem qdisc (Specified qdisc kind is unknown)",
        "modprobe sch_netem",
    )
    qdiscs["fq"] = check(False, "kernel has no fq qdisc", "modprobe sch_fq")
    features = {name: check(True, f"{name} works") for name in FEATURES}
    features["openvswitch"] = check(False, "kernel module not loaded", "modprobe openvswitch")
    tools = {
        "python": tool(True, "3.11.7", required=True),
        "iperf3": tool(True, "3.12", "/usr/bin/iperf3", required=True),
        "ping": tool(True, "20221126", "/usr/bin/ping", required=True),
        "ip": tool(True, "6.1.0", "/usr/sbin/ip", required=True),
        "tc": tool(True, "6.1.0"),
        "iptables": tool(True, "1.8.9 (nf_tables)"),
        "mnexec": tool(True, "unknown"),
        "irtt": tool(False, "", "not installed", "apt-get install irtt"),
        "pyroute2": tool(True, "0.9.7"),
        "scapy": tool(True, "2.8.0"),
        "mininet": tool(True, "2.3.0.dev6"),
        "netfilterqueue": tool(True, "1.1.0"),
    }
    return {
        "schema": "testbed.doctor/1",
        "root": True,
        "kernel": "6.18.44-test",
        "cpus": 2,
        "python": "3.11.7",
        "qdiscs": qdiscs,
        "features": features,
        "tools": tools,
        "delay_backend": "userspace",
        "delay_backend_reason": "kernel has no netem qdisc (Specified qdisc kind is unknown)",
        "scratch_netns": {"name": "tbn-doctor-1", "removed": True},
    }


def messages(found) -> list:
    return [problem.message for problem in found]


# ---------------------------------------------------------------- problems


def test_healthy_machine_without_netem_has_no_problem():
    # no netem, no fq, no OVS, no irtt: labs still run (userspace backend)
    assert problems(healthy_report()) == []


def test_not_root_is_the_one_problem_when_nothing_could_be_tested():
    report = healthy_report()
    report["root"] = False
    for section in ("qdiscs", "features"):
        for entry in report[section].values():
            entry.update(check(None, "not tested: needs root"))
    # only known gaps count: with netem untested, a missing userspace binding is not one
    report["tools"]["netfilterqueue"] = tool(False, detail="not installed")
    found = problems(report)
    assert len(found) == 1
    assert isinstance(found[0], EnvironmentProblem)
    assert "root" in found[0].message
    assert found[0].hint == "run it with sudo"
    assert found[0].exit_code == 3


@pytest.mark.parametrize(
    "section, name, words",
    [
        ("features", "netns", "network namespaces"),
        ("features", "veth", "veth"),
        ("qdiscs", "htb", "htb"),
    ],
)
def test_each_blocking_kernel_feature(section, name, words):
    report = healthy_report()
    report[section][name] = check(False, "Operation not supported", f"modprobe {name}")
    found = problems(report)
    assert len(found) == 1
    assert words in found[0].message
    assert "Operation not supported" in found[0].message
    assert found[0].hint == f"modprobe {name}"


def test_no_delay_backend_when_netem_and_nfqueue_both_missing():
    report = healthy_report()
    report["features"]["nfqueue"] = check(
        False, "iptables: No chain/target/match by that name.", "modprobe xt_NFQUEUE"
    )
    found = problems(report)
    assert len(found) == 1
    assert "no delay backend" in found[0].message
    assert "No chain/target/match" in found[0].message
    assert "sch_netem" in found[0].hint and "xt_NFQUEUE" in found[0].hint


def test_missing_nfqueue_is_fine_when_netem_works():
    report = healthy_report()
    report["qdiscs"]["netem"] = check(True, "netem qdisc accepted by the kernel")
    report["features"]["nfqueue"] = check(False, "no NFQUEUE", "modprobe xt_NFQUEUE")
    report["tools"]["netfilterqueue"] = tool(False, detail="not installed")
    assert problems(report) == []


def test_userspace_backend_needs_the_python_binding():
    report = healthy_report()
    report["tools"]["netfilterqueue"] = tool(False, detail="python package NetfilterQueue not installed")
    found = problems(report)
    assert len(found) == 1
    assert "NetfilterQueue" in found[0].message
    assert "libnetfilter-queue-dev" in found[0].hint


def test_required_tools_missing():
    report = healthy_report()
    for name in REQUIRED_TOOLS:
        report["tools"][name] = tool(False, detail="not installed", hint=f"apt-get install {name}")
    found = problems(report)
    assert [m.split(" ")[0] for m in messages(found)] == list(REQUIRED_TOOLS)
    assert [p.hint for p in found] == [f"apt-get install {name}" for name in REQUIRED_TOOLS]


def test_optional_tools_missing_are_not_problems():
    report = healthy_report()
    for name in ("irtt", "mnexec", "tc", "scapy"):
        report["tools"][name] = tool(False, detail="not installed", hint="apt-get install x")
    assert problems(report) == []


def test_problems_tolerate_a_partial_report():
    found = problems({"root": True})
    assert found == []
    found = problems({})
    assert len(found) == 1 and "root" in found[0].message


# ---------------------------------------------------------------- render


def test_render_shows_backend_checks_hints_and_versions():
    text = render(healthy_report())
    assert "delay backend: userspace (kernel has no netem qdisc (Specified qdisc kind is unknown))" in text
    assert "kernel 6.18.44-test" in text and "root: yes" in text
    for label in ("qdisc netem", "qdisc htb", "ifb-device", "nfqueue", "br_netfilter"):
        assert label in text, label
    assert "MISSING" in text
    assert "modprobe sch_netem" in text
    assert "20221126" in text and "1.8.9 (nf_tables)" in text
    assert "MISSING (optional)" in text  # irtt
    assert "no blocking problems" in text


def test_render_lists_problems_with_fixes():
    report = healthy_report()
    report["root"] = False
    report["tools"]["iperf3"] = tool(False, detail="not installed", hint="apt-get install iperf3")
    text = render(report)
    assert "2 problem(s) keep labs from running" in text
    assert "iperf3 is missing" in text
    assert "(fix: apt-get install iperf3)" in text
    assert "root: no" in text


def test_render_marks_untested_and_leftover_namespace():
    report = healthy_report()
    report["qdiscs"]["tbf"] = check(None, "not tested: needs root")
    report["scratch_netns"] = {"name": "tbn-doctor-7", "removed": False}
    text = render(report)
    assert "untested" in text
    assert "tbn-doctor-7 could not be removed" in text


def test_render_and_problems_do_not_modify_the_report():
    report = healthy_report()
    before = copy.deepcopy(report)
    render(report)
    problems(report)
    assert report == before


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "name, output, expected",
    [
        ("iperf3", "iperf 3.12 (cJSON 1.7.15)\nLinux vm 6.18.44 #1 SMP x86_64\n", "3.12"),
        ("ping", "ping from iputils 20221126\nlibcap: yes, IDN: yes\n", "20221126"),
        ("ping", "ping utility, iputils-s20180629\n", "s20180629"),
        ("ip", "ip utility, iproute2-6.1.0, libbpf 1.1.2\n", "6.1.0"),
        ("tc", "tc utility, iproute2-ss200127\n", "ss200127"),
        ("iptables", "iptables v1.8.9 (nf_tables)\n", "1.8.9 (nf_tables)"),
        ("iptables", "iptables v1.8.7 (legacy)\n", "1.8.7 (legacy)"),
        ("irtt", "irtt version: 0.9.0\nprotocol version: 1\n", "0.9.0"),
        ("mnexec", "2.3.0\n", "2.3.0"),
        ("mnexec", "\n", ""),
    ],
)
def test_tool_versions_from_captured_output(name, output, expected):
    assert tool_version(name, output) == expected


# ---------------------------------------------------------------- probe without root


def test_probe_without_root_tests_nothing_in_the_kernel(monkeypatch):
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)

    def no_namespaces(*args, **kwargs):
        raise AssertionError("probe() must not create namespaces without root")

    monkeypatch.setattr(doctor, "_probe_kernel", no_namespaces)
    report = doctor.probe()
    json.dumps(report)  # JSON-ready
    assert report["root"] is False
    assert all(report["qdiscs"][k]["ok"] is None for k in QDISC_KINDS)
    assert report["features"]["netns"]["ok"] is None
    assert report["delay_backend"] == "userspace"
    assert list(report["features"]) == list(FEATURES)
    assert "root" in problems(report)[0].message
