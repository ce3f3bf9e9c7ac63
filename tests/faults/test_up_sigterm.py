"""SIGTERM during ``testbed up`` tears the half-built lab down, as Ctrl-C does (issue 17, 8a).

Before: the default SIGTERM action killed ``testbed up`` mid-build; the lab
was left half made (one delay line of twelve running, links unshaped) and
``testbed status`` called it healthy. Now the signal unwinds the build and
everything is removed; and a lab whose creation was cut short by SIGKILL is
never called healthy, and ``testbed clean`` takes it.

Oracles: ``ip netns list`` (helpers), the state directory, ``testbed status --json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import helpers

pytestmark = pytest.mark.integration

LAB = "ft-upterm"
# two-clouds over transit with 512 hosts: a build of seconds, long enough to catch it in
UP_ARGV = [sys.executable, "-m", "testbed.cli", "up", "two-clouds", "--name", LAB,
           "--set", "path=transit", "--set", "hosts_per_site=256"]


def _state() -> dict:
    path = helpers.STATE_DIR / LAB / "lab.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True,
                          timeout=120, env=helpers.subprocess_env())


def _start_and_catch_creating() -> subprocess.Popen:
    """Start 'testbed up' and return once its lab is being created (namespaces appear)."""
    proc = subprocess.Popen(UP_ARGV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=helpers.subprocess_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    prefix = f"tb.{LAB}."
    while time.monotonic() < deadline:
        # a listing of /run/netns, not 'ip netns list': fast enough to catch a build of ~1 s
        made = any(n.startswith(prefix) for n in os.listdir("/run/netns")) if os.path.isdir("/run/netns") else False
        if made and _state().get("status") == "creating":
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    proc.kill()
    out, err = proc.communicate(timeout=60)
    _cli("clean", LAB)
    pytest.fail(f"never saw the lab while it was being created (exit {proc.returncode}): {err[-500:]}")


def _guard_chain_present() -> bool:
    return f"-N TB-{LAB}" in subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True,
                                            text=True, timeout=30).stdout


def _clean_if_anything_left() -> None:
    if _state() or helpers.lab_netns_names(LAB) or _guard_chain_present():
        _cli("clean", LAB)


@pytest.fixture
def no_leftover(require_root):
    _clean_if_anything_left()
    yield
    _clean_if_anything_left()


def test_sigterm_during_up_removes_the_half_built_lab(no_leftover):
    proc = _start_and_catch_creating()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert helpers.lab_netns_names(LAB) == []
    assert not (helpers.STATE_DIR / LAB).exists()


def test_a_lab_cut_short_by_sigkill_is_not_healthy_and_clean_takes_it(no_leftover):
    proc = _start_and_catch_creating()
    proc.kill()
    proc.communicate(timeout=60)
    status = json.loads(_cli("status", "--json").stdout)
    (row,) = [r for r in status["labs"] if r["lab"] == LAB]
    assert row["status"] == "creating" and row["healthy"] is False
    text = _cli("status", LAB).stdout
    assert "INCOMPLETE" in text, text
    cleaned = _cli("clean")  # no name: leftovers of dead processes only
    assert LAB in cleaned.stdout, cleaned.stdout
    assert helpers.lab_netns_names(LAB) == []
