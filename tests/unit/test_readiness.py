"""testbed.readiness: waits without a fixed startup deadline (real child processes, no root)."""

import subprocess
import sys
import time

import pytest

from testbed.errors import RunError, ToolError
from testbed.readiness import cpu_and_state, wait_until

PY = sys.executable


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-c", code])


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=10)


def test_a_busy_slow_starter_is_waited_for_past_the_stall_bound():
    # 3 s of CPU work before it is "ready": longer than stall_s, but always progressing
    proc = _child("import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass\n"
                  "time.sleep(30)")
    begin = time.monotonic()
    try:
        took = wait_until(lambda: time.monotonic() - begin > 3.2, "busy starter", pid=proc.pid,
                          stall_s=1.0, ceiling_s=30)
        assert took > 3.0
    finally:
        _stop(proc)


def test_a_stuck_process_fails_naming_what_did_not_start():
    proc = _child("import time; time.sleep(60)")
    try:
        begin = time.monotonic()
        with pytest.raises(ToolError, match=r"^sleeper did not start: no progress .* for 1 s"):
            wait_until(lambda: False, "sleeper", pid=proc.pid, stall_s=1.0)
        assert time.monotonic() - begin < 10
    finally:
        _stop(proc)


def test_the_ceiling_bounds_a_process_that_spins_forever():
    proc = _child("while True: pass")
    try:
        with pytest.raises(RunError, match="spinner did not start: still not ready after 2 s"):
            wait_until(lambda: False, "spinner", pid=proc.pid, stall_s=30, ceiling_s=2.0,
                       error=RunError)
    finally:
        _stop(proc)


def test_an_exit_fails_at_once_with_its_reason():
    with pytest.raises(ToolError, match="^server did not start: exited 3$"):
        wait_until(lambda: False, "server", exited=lambda: "exited 3", stall_s=30)


def test_cpu_and_state_reads_proc_and_none_once_gone():
    proc = _child("pass")
    proc.wait(timeout=10)
    assert cpu_and_state(proc.pid) is None or cpu_and_state(proc.pid)[1] in "ZX"
    ticks, state = cpu_and_state(__import__("os").getpid())
    assert ticks > 0 and state == "R"
