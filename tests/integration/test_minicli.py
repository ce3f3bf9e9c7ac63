"""Mininet's CLI and node API on a running testbed lab (testbed up --cli)."""

import os
import subprocess
import sys

import pytest

from testbed.lab.lab import Lab
from testbed.lab.minicli import mininet_view, run_cli, stop_view
from testbed.lab.teardown import pids_in_namespaces

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]


@pytest.fixture
def two_clouds():
    lab = Lab.create("two-clouds", name="it-cli2")
    try:
        yield lab
    finally:
        lab.destroy()


def test_cli_accepts_node_names_with_dashes(two_clouds, tmp_path):
    script = tmp_path / "cmds"
    script.write_text("cw-h1 ping -n -c 1 gcp-h1\n")
    code = ("import sys; from testbed.lab.lab import Lab; from testbed.lab.minicli import run_cli; "
            "run_cli(Lab.attach(sys.argv[1]), script=sys.argv[2])")
    proc = subprocess.run([sys.executable, "-c", code, two_clouds.name, str(script)],
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert f"from {two_clouds.node('gcp-h1').ip}" in out, out


@pytest.fixture
def lab():
    lab = Lab.create("pair", name="it-cli", links={"link": {"delay": "5ms"}})
    try:
        yield lab
    finally:
        lab.destroy()


def test_mininet_hosts_run_in_the_lab_namespaces(lab):
    net = mininet_view(lab)
    try:
        h1, h2 = net["h1"], net["h2"]
        assert h1.IP() == lab.node("h1").ip
        out = h1.cmd(f"ping -n -c 2 -i 0.2 {h2.IP()}")
        assert "2 received" in out, out
        # the shell really lives in the lab's namespace (identity, not name)
        assert os.stat(f"/proc/{h1.pid}/ns/net").st_ino == os.stat(f"/run/netns/{lab.node('h1').netns}").st_ino
    finally:
        stop_view(net)


def test_cli_script_substitutes_node_names_and_leaves_no_shell(lab, tmp_path):
    script = tmp_path / "cmds"
    script.write_text("h1 ping -n -c 1 h2\n")
    code = ("import sys; from testbed.lab.lab import Lab; from testbed.lab.minicli import run_cli; "
            "run_cli(Lab.attach(sys.argv[1]), script=sys.argv[2])")
    proc = subprocess.run([sys.executable, "-c", code, lab.name, str(script)],
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr  # Mininet's CLI prints through its logger
    assert proc.returncode == 0, out
    assert f"from {lab.node('h2').ip}" in out, out
    # only the lab's own delay line is left in its namespaces
    netns = [lab.node(n).netns for n in lab.node_names()]
    assert not pids_in_namespaces(netns), pids_in_namespaces(netns)
