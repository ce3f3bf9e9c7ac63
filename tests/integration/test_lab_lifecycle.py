"""Lab lifecycle: create, use, inspect, break, destroy and clean -- checked with ip/iptables.

Oracles: ``ip -json netns list``, ``/proc/<pid>``, the state directory,
``iptables -S`` in the root namespace, ``ip -json addr`` inside a node and
``bridge -json link show``; the CLI is run as a subprocess
(``python -m testbed.cli``) exactly as a user would.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import helpers
from testbed.errors import DelayLineDied
from testbed.measure import RUNNERS

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60


def _cli(*args: str) -> subprocess.CompletedProcess:
    return helpers.run_cmd([sys.executable, "-m", "testbed.cli", *args],
                           timeout_s=CLI_TIMEOUT_S, check=False, env=helpers.subprocess_env(),
                           cwd=str(helpers.REPO_ROOT))


def _gone(pid: int, start: int) -> bool:
    """The very process (pid, start time) no longer has a /proc entry."""
    return helpers.pid_start_time(pid) != start


def _lab_artifacts(name: str) -> dict:
    rules = helpers.iptables_rules()
    return {
        "namespaces": helpers.lab_netns_names(name),
        "state_dir": (helpers.STATE_DIR / name).exists(),
        "chain": [r for r in rules if f"TB-{name}" in r.split()],
    }


NOTHING_LEFT = {"namespaces": [], "state_dir": False, "chain": []}


def _remove_if_left(name: str) -> None:
    """Tear down a lab of ours that a test (or an interrupted run) left behind."""
    if _lab_artifacts(name) != NOTHING_LEFT:
        from testbed.lab import teardown

        teardown.teardown(name)


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


# -- destroy -------------------------------------------------------------------

def test_destroy_removes_namespaces_processes_state_and_guard(lab_factory):
    name = "it-life"
    lab = lab_factory.create("pair", name=name, links={"link": {"delay": "5ms"}})
    lines = [(r.pid, r.start) for r in lab.proc_records() if r.kind == "delayline"]
    up = _lab_artifacts(name)
    assert sorted(up["namespaces"]) == sorted(
        [f"tb.{name}.h1", f"tb.{name}.h2", f"tb.{name}._w0"]), up
    assert up["state_dir"] and up["chain"], up
    # the userspace backend runs one delay line for the link; netem, none
    assert len(lines) == (1 if lab.backend == "userspace" else 0), (lab.backend, lines)
    assert all(helpers.pid_running(pid) for pid, _ in lines), lines

    lab.destroy()
    lab_factory.forget(lab)
    down = _lab_artifacts(name)
    assert down == NOTHING_LEFT, down
    assert all(_gone(pid, start) for pid, start in lines), (
        f"delay line still in /proc after destroy: {lines}")


# -- a killed owner, clean, and a persistent lab that must survive --------------

OWNER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from testbed.lab.lab import Lab
    Lab.create("pair", name=sys.argv[1], links={"link": {"delay": "5ms"}},
               owner_pid=os.getpid(), backend=sys.argv[2])
    print("up", flush=True)
    time.sleep(120)
""")


def test_clean_removes_lab_of_killed_owner_and_keeps_persistent_lab(lab_factory, tmp_path):
    keep = lab_factory.create("pair", name="it-keep", links={"link": {"delay": "1ms"}})
    _remove_if_left("it-kill")
    script = tmp_path / "owner.py"
    script.write_text(OWNER_SCRIPT)
    owner = subprocess.Popen([sys.executable, str(script), "it-kill", helpers.TEST_BACKEND], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=helpers.subprocess_env(),
                             cwd=str(helpers.REPO_ROOT))
    try:
        ready, _, _ = select.select([owner.stdout], [], [], 30)
        line = owner.stdout.readline().decode().strip() if ready else ""
        assert line == "up", f"owner script did not bring it-kill up: {line!r} " + (
            owner.stderr.read().decode()[-2000:] if owner.poll() is not None else "")
        doc = json.loads((helpers.STATE_DIR / "it-kill" / "lab.json").read_text())
        lines = [(p["pid"], p["start"]) for p in doc["procs"] if p["kind"] == "delayline"]
        # a delay line per shaped link with the userspace backend; netem runs none
        assert doc["owner"]["pid"] == owner.pid and bool(lines) == (doc["backend"] == "userspace"), doc
        assert helpers.lab_netns_names("it-kill")

        os.kill(owner.pid, signal.SIGKILL)  # our own child, by its pid
        owner.wait(timeout=10)
        assert all(not _gone(pid, start) for pid, start in lines), (
            "delay lines should outlive their killed owner until clean")

        clean = _cli("clean")
        assert clean.returncode == 0, clean.stderr
        assert _lab_artifacts("it-kill") == NOTHING_LEFT
        # the lines were re-parented to init when their owner died: it reaps them
        _wait_until(lambda: all(_gone(pid, start) for pid, start in lines), 5.0,
                    f"delay lines {lines} to leave /proc")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
        for stream in (owner.stdout, owner.stderr):
            stream.close()
        _remove_if_left("it-kill")

    # the persistent lab made before is untouched and still carries traffic
    assert len(helpers.lab_netns_names("it-keep")) == 3
    assert (helpers.STATE_DIR / "it-keep").exists()
    h1, h2 = keep.node("h1"), keep.node("h2")
    ping = h1.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", h2.ip], timeout_s=15,
                  check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    keep.destroy()
    lab_factory.forget(keep)
    assert _lab_artifacts("it-keep") == NOTHING_LEFT


# -- several labs, the CLI, a dead delay line ------------------------------------

def test_two_labs_get_disjoint_address_blocks(lab_factory):
    a = lab_factory.create("pair", name="it-blk-a")
    b = lab_factory.create("pair", name="it-blk-b")
    block_a, block_b = ipaddress.IPv4Network(a.block), ipaddress.IPv4Network(b.block)
    assert not block_a.overlaps(block_b), (a.block, b.block)
    for lab, block in ((a, block_a), (b, block_b)):
        for host in ("h1", "h2"):
            netns = f"tb.{lab.name}.{host}"
            addrs = [ipaddress.IPv4Address(i["local"])
                     for entry in helpers.ip_json(["-4", "addr", "show"], netns)
                     for i in entry.get("addr_info", []) if entry["ifname"] != "lo"]
            assert addrs and all(x in block for x in addrs), (netns, addrs, block)


def test_cli_exec_runs_in_the_host_and_status_reports_healthy(lab_factory):
    lab = lab_factory.create("pair", name="it-cli", links={"link": {"delay": "1ms"}})
    h1 = lab.node("h1")
    done = _cli("exec", "it-cli", "h1", "--", "ip", "-j", "addr")
    assert done.returncode == 0, done.stderr
    seen = {(i["local"], entry["ifname"]) for entry in json.loads(done.stdout)
            for i in entry.get("addr_info", []) if i.get("family") == "inet"}
    oracle = {(i["local"], entry["ifname"]) for entry in helpers.ip_json(["addr"], h1.netns)
              for i in entry.get("addr_info", []) if i.get("family") == "inet"}
    root = {(i["local"], entry["ifname"]) for entry in helpers.ip_json(["addr"])
            for i in entry.get("addr_info", []) if i.get("family") == "inet"}
    assert seen == oracle and (h1.ip, "h1-eth0") in seen, (seen, oracle)
    assert not (seen - {("127.0.0.1", "lo")}) & root, "exec ran in the root namespace"

    status = _cli("status", "--json")
    assert status.returncode == 0, status.stderr
    rows = {row["lab"]: row for row in json.loads(status.stdout)["labs"]}
    assert "it-cli" in rows and rows["it-cli"]["healthy"] is True, rows.get("it-cli")
    assert rows["it-cli"]["block"] == lab.block


@pytest.mark.userspace
def test_killed_delay_line_is_detected(lab_factory):
    lab = lab_factory.create("pair", name="it-dlkill", links={"link": {"delay": "5ms"}},
                             backend="userspace")
    lab.check()  # healthy: no error
    assert lab.status()["healthy"] is True
    records = [r for r in lab.proc_records() if r.kind == "delayline"]
    assert len(records) == 1, records
    os.kill(records[0].pid, signal.SIGKILL)  # the recorded pid, nothing else
    _wait_until(lambda: not helpers.pid_running(records[0].pid), 5.0, "the delay line to die")
    with pytest.raises(DelayLineDied):
        lab.check()
    assert lab.status()["healthy"] is False
    status = _cli("status", "--json")
    rows = {row["lab"]: row for row in json.loads(status.stdout)["labs"]}
    assert rows["it-dlkill"]["healthy"] is False, rows["it-dlkill"]
    assert [d["alive"] for d in rows["it-dlkill"]["delay_lines"]] == [False]


# -- readiness -----------------------------------------------------------------------

def test_create_returns_a_lab_that_forwards(lab_factory):
    # delay only: no htb on the wire (whose tc calls would hide the problem)
    lab_factory.create("pair", name="it-ready", ready=False, links={"link": {"delay": "5ms"}})
    problems = helpers.lab_ready_problems("it-ready")
    assert not problems, f"lab not ready when Lab.create returned: {problems}"


# -- two clouds: direct interconnect and internet transit ---------------------------

ROUTERS_ON_PATH = {
    "direct": ["cw-r1", "gcp-r1"],
    "transit": ["cw-r1", "tr1", "tr2", "tr3", "tr4", "gcp-r1"],
}


def _owner_of(address: str, namespaces) -> str:
    """The namespace whose interfaces carry ``address`` (``ip -json addr``)."""
    for netns in namespaces:
        for entry in helpers.ip_json(["-4", "addr", "show"], netns):
            if any(i.get("local") == address for i in entry.get("addr_info", [])):
                return netns
    return f"<{address}: in no lab namespace>"


@pytest.mark.parametrize("path,ttl_hops,path_mtu", [("direct", 3, 9000), ("transit", 7, 1500)])
def test_two_clouds_reachability_hops_and_path_mtu(lab_factory, path, ttl_hops, path_mtu):
    name = f"it-2c-{path}"
    lab = lab_factory.create("two-clouds", name=name, params={
        "hosts_per_site": 1, "path": path, "transit_hops": 4})
    src, dst = lab.node("cw-h1"), lab.node("gcp-h1")
    ping = src.run(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", dst.ip], timeout_s=15,
                   check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    measured = RUNNERS["path"].run(src, dst, attempts=3)
    assert (measured["ttl_hops"], measured["path_mtu"]) == (ttl_hops, path_mtu), measured
    # oracle: each hop that answered is an address of the expected router, in path order
    namespaces = helpers.lab_netns_names(name)
    hops = [_owner_of(a, namespaces) if a else None for a in measured["routers"]]
    assert hops == [f"tb.{name}.{r}" for r in ROUTERS_ON_PATH[path]], hops
