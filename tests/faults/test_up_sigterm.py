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
import signal
import subprocess
import sys
import time

import pytest

import helpers

pytestmark = pytest.mark.integration

LAB = "ft-upterm"
# two-clouds over transit with 128 hosts: the build takes a few seconds to catch it in
UP_ARGV = [sys.executable, "-m", "testbed.cli", "up", "two-clouds", "--name", LAB,
           "--set", "path=transit", "--set", "hosts_per_site=64"]


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
    while time.monotonic() < deadline:
        if _state().get("status") == "creating" and helpers.lab_netns_names(LAB):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    proc.kill()
    proc.communicate(timeout=60)
    _cli("clean", LAB)
    pytest.fail("never saw the lab while it was being created (did 'up' finish too fast?)")


@pytest.fixture
def no_leftover(require_root):
    _cli("clean", LAB) if _state() else None
    yield
    if _state() or helpers.lab_netns_names(LAB):
        _cli("clean", LAB)


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
