"""Faults of a lab across machines (one-box mode): a stand-in dies mid-run.

The run is ``testbed run across-machines --quick``; its stand-in machines are
namespaces with their own sshd, made by that run. Once the run is measuring,
either

* the sshd of stand-in m2 is killed (by the pid the run recorded for it in
  its lab.json: a process of the run we started), or
* stand-in m2's namespace is removed (``ip netns del``, its name only);

the run must then exit 1 with one stderr line naming machine m2, and after
``testbed clean`` nothing of the lab is left: no namespace, no guard chain,
no process the run started (the sshds included), no state directory (the
stand-ins' own included). Oracles: ``ip netns``, ``iptables -S``, /proc
(see conftest.py), never the testbed's view of itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import helpers

pytestmark = pytest.mark.integration

IS_ROOT = os.geteuid() == 0


def _lab_doc(lab: str) -> dict:
    return json.loads((helpers.STATE_DIR / lab / "lab.json").read_text())


def _sshd(lab: str, machine: str):
    doc = _lab_doc(lab)
    return next((p["pid"], p["start"]) for p in doc["procs"]
                if p["kind"] == "sshd" and p["netns"] == f"tb.{lab}._m{machine}")


def _clean() -> subprocess.CompletedProcess:
    return helpers.run_cmd([sys.executable, "-m", "testbed.cli", "clean"], timeout_s=120, check=False,
                           env=helpers.subprocess_env(), cwd=str(helpers.REPO_ROOT))


def _run_and_break(ft, tmp_path, breaker):
    out = tmp_path / "out"
    run = ft.RunProcess(["across-machines", "--quick", "--out", str(out),
                         "--set", "measure.tcp.duration_s=8"], tmp_path)
    try:
        try:
            run.wait_for("] tcp ", 120)
            trace = ft.trace_lab(run.lab, extra=ft.descendants(run.pid))
            sshd = {m: _sshd(run.lab, m) for m in ("m1", "m2")}
            trace.procs.update(dict(sshd.values()))
            breaker(run.lab, sshd)
            code = run.finish(120)
        finally:
            run.close()
        cleaned = _clean()
        left = ft.wait_no_leftovers(trace)
        state_left = sorted(str(p) for p in (helpers.STATE_DIR / ".machines").glob(f"*/{run.lab}"))
    finally:
        ft.remove_ft_lab(run.lab)
    return {"code": code, "stderr": run.stderr(), "output": run.output(), "left": left + state_left,
            "clean": cleaned, "out": out}


@pytest.mark.parametrize("how", ["sshd killed", "namespace removed"])
def test_a_standin_dying_mid_run_fails_the_run_naming_it_and_clean_leaves_nothing(ft, require_root,
                                                                                   tmp_path, how):
    def breaker(lab, sshd):
        if how == "sshd killed":
            os.kill(sshd["m2"][0], signal.SIGKILL)  # recorded by the run we started
        else:
            helpers.run_cmd(["ip", "netns", "del", f"tb.{lab}._mm2"])

    seen = _run_and_break(ft, tmp_path, breaker)
    assert seen["code"] == 1, seen["output"]
    lines = seen["stderr"].strip().splitlines()
    assert lines and "Traceback" not in seen["stderr"], seen["stderr"]
    assert "machine m2" in lines[-1], seen["stderr"]
    doc = json.loads((seen["out"] / "results.json").read_text())
    assert doc["complete"] is False and any("machine m2" in e for e in doc["errors"]), doc["errors"]
    assert seen["clean"].returncode == 0, seen["clean"].stderr
    assert not seen["left"], seen["left"]


def test_a_link_the_underlay_cannot_carry_is_refused_before_any_slice_is_built(ft, require_root):
    # one-box underlay MTU 9216: a 9200-byte direct link needs 9250 with VXLAN
    lab = "ft-mtu"
    ft.remove_ft_lab(lab)
    baseline = ft.root_state()
    try:
        proc = helpers.run_cmd([sys.executable, "-m", "testbed.cli", "up", "two-clouds", "--name", lab,
                                "--set", "placement.cw=m1", "--set", "placement.gcp=m2",
                                "--set", "direct.mtu=9200"], timeout_s=120, check=False,
                               env=helpers.subprocess_env(), cwd=str(helpers.REPO_ROOT))
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "raise the underlay MTU to 9250 or set the link's mtu to 9166" in proc.stderr, proc.stderr
        assert not helpers.lab_netns_names(lab)
        assert not (helpers.STATE_DIR / lab).exists()
        assert not list((helpers.STATE_DIR / ".machines").glob(f"*/{lab}"))
        assert not ft.root_changes(baseline, ft.root_state())
    finally:
        ft.remove_ft_lab(lab)
