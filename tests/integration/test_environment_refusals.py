"""Refusals that must happen before anything is changed on the machine (exit 3)."""

import ipaddress
import json
import os
import subprocess

import pytest

from testbed.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to inspect the root namespace"),
]


def _root_network() -> str:
    """A network the root namespace really uses (oracle: ip -j addr)."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    for link in json.loads(out):
        for addr in link.get("addr_info", []):
            if not addr["local"].startswith("127."):
                net = ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
                return str(net.supernet(new_prefix=min(net.prefixlen, 24)))
    pytest.skip("the root namespace has no non-loopback IPv4 address to collide with")


def _snapshot():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=10).stdout
    return netns, rules, os.path.exists("/run/testbed/it-overlap")


def test_block_overlapping_the_root_namespace_exits_3_and_changes_nothing(capsys):
    before = _snapshot()
    code = main(["up", "pair", "--name", "it-overlap", "--set", f"block={_root_network()}"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "overlaps" in err and "fix:" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _snapshot() == before


def test_not_root_exits_3_with_hint_before_anything(capsys, monkeypatch):
    before = _snapshot()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code = main(["up", "pair", "--name", "it-noroot", "--set", "link.delay=5ms"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "sudo" in err, err
    monkeypatch.undo()
    assert _snapshot() == before
