"""``testbed doctor`` on this machine: what it finds, and that it cleans up.

This development kernel has htb, NFQUEUE and veth but no netem (PRODUCT.md,
"Facts about the machines"), so the probe must pick the userspace backend.
On a kernel WITH netem (CI runners, Ubuntu) the netem-specific assertions
skip with that reason instead. Oracles: ``ip netns list`` for leftovers and
``tc`` itself for whether netem exists, never the code under test.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from testbed.doctor import problems, probe, render

pytestmark = pytest.mark.integration

TIMEOUT_S = 20.0


def netns_names() -> set:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=TIMEOUT_S, check=True
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def kernel_has_netem() -> bool:
    """Independent oracle: ask tc to add netem in a throwaway namespace."""
    netns = f"tbn-oracle-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=TIMEOUT_S)
    try:
        subprocess.run(
            ["ip", "-n", netns, "link", "add", "tbn-o0", "type", "veth", "peer", "name", "tbn-o1"],
            check=True, timeout=TIMEOUT_S,
        )
        proc = subprocess.run(
            ["tc", "-n", netns, "qdisc", "add", "dev", "tbn-o0", "root", "netem", "delay", "1ms"],
            capture_output=True, text=True, timeout=TIMEOUT_S,
        )
        return proc.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", netns], timeout=TIMEOUT_S, check=True)


@pytest.fixture(scope="module")
def report_and_namespaces():
    if os.geteuid() != 0:
        pytest.skip("needs root (the probe creates a scratch network namespace)")
    before = netns_names()
    report = probe()
    after = netns_names()
    return report, before, after


def test_leaves_no_tbn_namespace_behind(report_and_namespaces):
    report, before, after = report_and_namespaces
    new = {name for name in after - before if name.startswith("tbn-")}
    assert new == set(), f"probe() left namespaces behind: {sorted(new)}"
    assert report["scratch_netns"]["name"].startswith(f"tbn-doctor-{os.getpid()}")
    assert report["scratch_netns"]["removed"] is True


def test_finds_htb_veth_netns_and_nfqueue(report_and_namespaces):
    report, _before, _after = report_and_namespaces
    assert report["root"] is True
    assert report["qdiscs"]["htb"]["ok"] is True, report["qdiscs"]["htb"]
    assert report["features"]["netns"]["ok"] is True
    assert report["features"]["veth"]["ok"] is True
    assert report["features"]["nfqueue"]["ok"] is True, report["features"]["nfqueue"]
    assert report["tools"]["ip"]["ok"] is True
    assert report["kernel"] == os.uname().release


def test_netem_verdict_matches_tc_and_picks_the_backend(report_and_namespaces):
    report, _before, _after = report_and_namespaces
    has_netem = kernel_has_netem()
    assert report["qdiscs"]["netem"]["ok"] is has_netem, report["qdiscs"]["netem"]
    if has_netem:
        assert report["delay_backend"] == "netem"
        pytest.skip("this kernel has netem: the no-netem expectations below do not apply")
    assert report["delay_backend"] == "userspace"
    assert "Specified qdisc kind is unknown" in report["delay_backend_reason"]
    assert report["qdiscs"]["netem"]["hint"], "a missing netem must come with a fix hint"


def test_this_machine_has_no_blocking_problem_and_renders(report_and_namespaces):
    report, _before, _after = report_and_namespaces
    found = problems(report)
    assert found == [], [str(p) for p in found]
    text = render(report)
    assert f"delay backend: {report['delay_backend']}" in text
    assert "qdisc htb" in text
