"""Host names resolve inside a lab, as ``testbed exec LAB h1 -- ping h2`` suggests (issue 17, item 7).

Oracles: ``getent hosts`` and ``ping`` run through ``ip netns exec`` (what
``testbed exec`` runs), and the ``/etc/netns`` directory after ``down``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from testbed.lab.lab import Lab

pytestmark = pytest.mark.integration

LAB = "it-names"


@pytest.fixture
def two_clouds():
    lab = Lab.create("two-clouds", LAB, params={"hosts_per_site": 2})
    try:
        yield lab
    finally:
        lab.destroy()
    assert not [p for p in Path("/etc/netns").glob(f"tb.{LAB}.*")] if Path("/etc/netns").exists() else True


def test_names_resolve_to_lab_addresses(two_clouds):
    lab = two_clouds
    target = lab.node("gcp-h2")
    out = subprocess.run(["ip", "netns", "exec", lab.node("cw-h1").netns, "getent", "hosts", "gcp-h2"],
                         capture_output=True, text=True, timeout=15)
    assert out.returncode == 0 and out.stdout.split()[0] == target.ip, out
    routers = subprocess.run(["ip", "netns", "exec", lab.node("cw-h1").netns, "getent", "hosts", "cw-r1"],
                             capture_output=True, text=True, timeout=15)
    assert routers.returncode == 0 and routers.stdout.split()[0] == lab.node("cw-r1").ip


def test_testbed_exec_pings_a_host_by_name(two_clouds):
    proc = subprocess.run([sys.executable, "-m", "testbed.cli", "exec", LAB, "cw-h1", "--",
                           "ping", "-n", "-c", "1", "-W", "2", "gcp-h1"],
                          capture_output=True, text=True, timeout=30, env=helpers.subprocess_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"({two_clouds.node('gcp-h1').ip})" in proc.stdout


def test_up_takes_a_topology_file_like_mn_custom(tmp_path, capsys):
    """``testbed up path/to/mytopo.py:name`` (issue 17, item 6), its link shaped from --set."""
    from testbed import cli

    path = tmp_path / "mytopo.py"
    path.write_text(
        "from mininet.topo import Topo\n\n"
        "class Duo(Topo):\n"
        "    def build(self):\n"
        "        self.addHost('left', site='a')\n"
        "        self.addHost('right', site='b')\n"
        "        self.addLink('left', 'right', link='wan')\n\n"
        "topos = {'duo': Duo}\n")
    name = "it-custom"
    assert cli.main(["up", f"{path}:duo", "--name", name, "--set", "wan.delay=5ms"]) == 0
    try:
        lab = Lab.attach(name)
        assert lab.doc["topology"] == f"{path}:duo"
        out = subprocess.run(["ip", "netns", "exec", lab.node("left").netns, "ping", "-n", "-c", "3",
                              "-i", "0.2", "right"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        rtts = [float(part.split("=")[1]) for line in out.stdout.splitlines()
                for part in line.split() if part.startswith("time=")]
        assert len(rtts) == 3 and min(rtts) >= 10.0, rtts  # 5 ms each way
    finally:
        assert cli.main(["down", name]) == 0
    capsys.readouterr()
