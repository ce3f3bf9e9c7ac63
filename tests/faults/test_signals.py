"""A running ``testbed run`` ended by SIGINT, SIGTERM or SIGKILL leaves nothing behind.

Each case starts ``testbed run`` (a subprocess, the fault scenario with
``--set measure.tcp.duration_s=10``), waits until the TCP step runs (an
iperf3 client lives in the source host's namespace), takes a trace of the lab
(namespaces with their inodes, every process in them or recorded for them,
every descendant of the run), then sends the signal -- to the run's pid, or
to its whole process group as a terminal's Ctrl-C does. SIGKILL leaves the
lab behind by necessity: the lab must then show its owner as dead (what
``testbed clean`` with no arguments looks for) and ``testbed clean LAB``
must remove it. One more case kills the run while it builds its lab.
(SIGINT/SIGTERM during the build is tested deterministically, in-process, by
``test_interrupt_while_a_namespace_is_being_created_leaves_nothing``: a
signal that lands inside pyroute2's ``netns.create`` leaves a namespace.)

Afterwards (oracles in conftest.py: ``ip -json``, ``tc -json``,
``iptables -S``, the NFQUEUE bindings, /proc) no namespace, interface,
qdisc, iptables rule, NFQUEUE binding, state file or process of the lab may
remain; results.json must be valid JSON with ``complete: false``; and a
bystander lab that stayed up all along must still carry a ping and an iperf3
transfer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import helpers
from testbed.results import validate_results

pytestmark = pytest.mark.integration

RUN_START_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0
TCP_DURATION = "measure.tcp.duration_s=10"

CASES = [
    # (signal, to the whole process group?, moment)
    (signal.SIGINT, False, "tcp"),
    (signal.SIGINT, True, "tcp"),
    (signal.SIGTERM, False, "tcp"),
    (signal.SIGTERM, True, "tcp"),
    (signal.SIGKILL, False, "tcp"),
    (signal.SIGKILL, True, "tcp"),
    (signal.SIGKILL, False, "build"),
]


def _case_id(case) -> str:
    signo, group, moment = case
    return f"{signal.Signals(signo).name}-{'group' if group else 'pid'}-during-{moment}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return helpers.run_cmd([sys.executable, "-m", "testbed.cli", *args], timeout_s=60, check=False,
                           env=helpers.subprocess_env(), cwd=str(helpers.REPO_ROOT))


def _wait_state_dir(lab: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (helpers.STATE_DIR / lab).exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"lab {lab} never got a state directory")
        time.sleep(0.005)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_run_ended_by_signal_leaves_nothing(ft, require_root, fault_scenario, tmp_path,
                                             bystander, case):
    signo, group, moment = case
    baseline = ft.root_state()
    out = tmp_path / "out"
    run = ft.RunProcess([str(fault_scenario), "--quick", "--out", str(out), "--set", TCP_DURATION],
                        tmp_path, new_session=group)
    try:
        try:
            if moment == "tcp":
                run.wait_for("] tcp ", RUN_START_TIMEOUT_S)
                ft.wait_for_procs_in(f"tb.{run.lab}.h1", 10.0)  # the iperf3 client runs
            else:
                run.wait_for("bringing up", RUN_START_TIMEOUT_S)
                _wait_state_dir(run.lab, 10.0)  # the lab's first mark on the machine
            trace = ft.trace_lab(run.lab, extra=ft.descendants(run.pid))
            if moment == "tcp":
                assert len(trace.namespaces) == 3 and trace.procs, f"lab not traced: {trace}"
            run.signal(signo, group=group)
            run.finish(EXIT_TIMEOUT_S)
        finally:
            run.close()
        _judge(ft, run, trace, baseline, out, case, bystander)
    finally:
        ft.remove_ft_lab(run.lab)  # whatever a failed case left (ours: we started the run)


def _judge(ft, run, trace, baseline, out, case, bystander) -> None:
    signo = case[0]
    code = run.proc.returncode
    if signo == signal.SIGKILL:
        assert code == -signal.SIGKILL, run.output()
        status = _cli("status", "--json")
        assert status.returncode == 0, status.stderr
        rows = {row["lab"]: row for row in json.loads(status.stdout)["labs"]}
        if run.lab in rows:  # (a kill during the build may come before the state has a plan)
            assert rows[run.lab]["owner_alive"] is False, rows[run.lab]
        clean = _cli("clean", run.lab)
        assert clean.returncode == 0, clean.stdout + clean.stderr
    else:
        assert code == 130, f"exit {code}\n" + run.output()
        assert "interrupted" in run.output()

    doc = json.loads((out / "results.json").read_text())  # valid JSON whatever the signal
    assert doc["complete"] is False, doc
    if signo != signal.SIGKILL:
        validate_results(doc)
        assert "interrupted" in doc["errors"], doc["errors"]
        assert (out / "report.md").is_file()

    left = ft.wait_no_leftovers(trace, baseline, timeout_s=10.0)
    assert not left, f"{_case_id(case)} left behind:\n  " + "\n  ".join(left)
    problems = ft.traffic_problems(bystander.name)
    assert not problems, f"bystander lab {bystander.name} broken by {_case_id(case)}: {problems}"
