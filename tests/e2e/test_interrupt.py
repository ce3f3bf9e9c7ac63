"""Ctrl-C and SIGTERM in the middle of a run: valid partial results, nothing left."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from testbed.results import validate_results

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]


def _default_sigint() -> None:
    """In the child before exec: SIGINT at its default, as from a terminal. Started from
    a background job (``nohup ... &``) the suite has SIGINT ignored, and a child
    inherits that (POSIX), so the run would never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          timeout=10).stdout


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_valid_json_and_no_lab(tmp_path, signo):
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "run", "--quick", "--out", str(tmp_path),
         "--set", "measure.tcp.duration_s=20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path),
        preexec_fn=_default_sigint)
    lab = f"tb.run{proc.pid % 100000}-0."
    seen = []
    deadline = time.monotonic() + 90
    try:
        for line in proc.stdout:
            seen.append(line)
            if "] tcp " in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        time.sleep(2)  # well inside the 20 s transfer
        assert lab in _namespaces()
        proc.send_signal(signo)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(seen) + rest
    doc = json.loads((tmp_path / "results.json").read_text())
    validate_results(doc)
    assert doc["complete"] is False
    assert doc["variants"][0]["complete"] is False
    assert lab not in _namespaces()
    assert not os.path.exists(f"/run/testbed/run{proc.pid % 100000}-0")
