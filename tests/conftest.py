"""Suite-wide check of guarantee 3: the root namespace is left as the suite found it.

When the suite runs as root, a session fixture takes a snapshot of the root
namespace at the start and compares it at the end (oracles: the kernel's own
tools, parsed in tests/helpers.py):

* addresses and interfaces (``ip -json addr``), IPv4 and IPv6 routes of every
  table (``ip -json route show table all``), the root qdiscs (``tc -json
  qdisc``), the NFQUEUE bindings (``/proc/net/netfilter/nfnetlink_queue``);
  veths whose peer lives in another live namespace (and bridges made only of
  them) are left out: that namespace explains them (another user's Mininet),
  and a lab's leftover namespace is reported by name below;
* ``iptables -S`` of the filter, nat, mangle and raw tables, minus the lines
  of labs' guard chains (``TB-<lab>``: a chain lives exactly as long as its
  lab, so a leftover chain is caught by name below instead);
* labs left behind: any ``tb.`` namespace, state directory or ``TB-`` chain of
  a lab that was not there at the start; and any other new namespace.

Options (the stock-kernel lane, ``./setup.sh vmtest``, uses both):

* ``--backend auto|netem|userspace`` (or ``TESTBED_TEST_BACKEND``): the delay
  backend of every lab the tests build through ``lab_factory``; the
  ``testbed run`` of the end-to-end tests picks its own (auto) and
  ``helpers.run_quick`` checks it is this one. Tests marked ``userspace`` are
  about the NFQUEUE delay line itself and pin that backend.
* ``--fail-on-skip``: a skipped test fails instead, with its skip reason, so a
  lane that exists to run the netem tests cannot pass by skipping them.

Anything still different after a short settling time fails the session (an
error on the last test) with the difference. A leftover lab whose owner
process is alive and not part of this session belongs to someone else working
on the same machine and is only listed; set ``TESTBED_ROOT_CHECK=0`` to turn
the check off on a machine shared that way.

Guard counters: a lab's guard chain vanishes with the lab, so its counter is
read at the last moment. For the session, ``testbed.lab.guard.remove`` is
wrapped to read ``iptables -L TB-<lab> -v -x`` just before the chain goes.
This sees every teardown made inside the pytest process (``Lab.destroy``,
fixtures, in-process CLI calls), not those of CLI subprocesses. Any packet
counted there fails the session, except for labs in
``DELIBERATE_GUARD_PROBES`` (a test that sends one packet at the guard on
purpose).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Set

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py

import helpers  # noqa: E402

IS_ROOT = os.geteuid() == 0
SETTLE_S = 5.0
NFQUEUE_PROC = Path("/proc/net/netfilter/nfnetlink_queue")
#: Labs whose tests send a packet at the guard on purpose (tests/integration/test_guard.py).
DELIBERATE_GUARD_PROBES = {"it-guard"}


def _snapshot() -> dict:
    snap = helpers.root_snapshot(ignore_chains=lambda chain: True)
    snap["qdiscs"] = json.loads(helpers.run_cmd(["tc", "-json", "qdisc", "show"]).stdout or "[]")
    try:
        snap["nfqueue"] = NFQUEUE_PROC.read_text()
    except OSError:
        snap["nfqueue"] = ""
    snap["namespaces"] = helpers.netns_names()
    return snap


def _labs_present() -> Dict[str, Set[str]]:
    """lab name -> the kinds of its pieces on the machine (namespace, state, chain)."""
    labs: Dict[str, Set[str]] = {}
    for name in helpers.netns_names():
        if name.startswith("tb.") and "." in name[3:]:
            labs.setdefault(name[3:].split(".")[0], set()).add("namespace")
    etc_netns = Path("/etc/netns")  # per-lab hosts links (testbed/lab/hostsfile.py)
    if etc_netns.is_dir():
        for entry in etc_netns.iterdir():
            if entry.name.startswith("tb.") and "." in entry.name[3:]:
                labs.setdefault(entry.name[3:].split(".")[0], set()).add("/etc/netns entry")
    if helpers.STATE_DIR.is_dir():
        for entry in helpers.STATE_DIR.iterdir():
            if entry.is_dir() and not entry.name.startswith("."):
                labs.setdefault(entry.name, set()).add("state dir")
    for rule in helpers.iptables_rules():
        parts = rule.split()
        if len(parts) == 2 and parts[0] == "-N" and parts[1].startswith("TB-"):
            labs.setdefault(parts[1][3:], set()).add("guard chain")
    return labs


def _ancestors(pid: int) -> Set[int]:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                data = fh.read()
        except OSError:
            break
        pid = int(data[data.rindex(")") + 2:].split()[1])
    return seen


def _someone_elses(lab: str) -> bool:
    """The lab's owner process is alive and not part of this session."""
    try:
        doc = json.loads((helpers.STATE_DIR / lab / "lab.json").read_text())
    except (OSError, ValueError):
        return False
    owner = doc.get("owner") or {}
    pid = owner.get("pid")
    if not pid or helpers.pid_start_time(pid) != owner.get("start"):
        return False
    return os.getpid() not in _ancestors(pid)


def _foreign_links(links: List[dict]) -> Set[str]:
    """Root interfaces another live namespace explains: veths whose peer lives there
    (``link_netnsid``) and bridges made only of such veths -- another user's Mininet,
    say, or a lab's, whose leftover namespace is reported by name anyway."""
    peered = {l["ifname"] for l in links if "link_netnsid" in l}
    ports: Dict[str, Set[str]] = {}
    for link in links:
        if link.get("master"):
            ports.setdefault(link["master"], set()).add(link["ifname"])
    return peered | {bridge for bridge, members in ports.items() if members <= peered}


def _comparable(snap: dict, skip: Set[str]) -> dict:
    out = dict(snap)
    out["addresses"] = [l for l in snap["addresses"] if l.get("ifname") not in skip]
    out["qdiscs"] = [q for q in snap["qdiscs"] if q.get("dev") not in skip]
    return out


def _differences(before: dict, labs_before: Set[str]) -> List[str]:
    after = _snapshot()
    skip = _foreign_links(before["addresses"]) | _foreign_links(after["addresses"])
    a, b = _comparable(before, skip), _comparable(after, skip)
    out = []
    for key in ("addresses", "routes4", "routes6", "iptables", "qdiscs", "nfqueue"):
        if a[key] != b[key]:
            out += helpers.diff_snapshots({key: a[key]}, {key: b[key]})
    new_ns = sorted(set(after["namespaces"]) - set(before["namespaces"]))
    out += [f"new namespace {n}" for n in new_ns if not n.startswith("tb.")]
    for lab, kinds in sorted(_labs_present().items()):
        if lab not in labs_before:
            out.append(f"lab {lab} left behind: {', '.join(sorted(kinds))}")
    return out


_SUMMARY: List[str] = []


def pytest_addoption(parser):
    group = parser.getgroup("testbed suite")
    group.addoption("--backend", choices=("auto", "netem", "userspace"),
                    default=os.environ.get("TESTBED_TEST_BACKEND", "auto"),
                    help="delay backend of the labs the tests build (default auto, or "
                         "$TESTBED_TEST_BACKEND)")
    group.addoption("--fail-on-skip", action="store_true",
                    help="a skipped test fails, with its reason (the stock-kernel lane)")


def pytest_configure(config):
    helpers.TEST_BACKEND = config.getoption("--backend")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With --fail-on-skip, turn any skip (setup, call or an early exit) into a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.config.getoption("--fail-on-skip") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under --fail-on-skip: {reason}"


def pytest_terminal_summary(terminalreporter):
    """Print what the session check found (fixture output itself is captured)."""
    for line in _SUMMARY:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def root_namespace_unchanged():
    """Snapshot the root namespace now; at the end, fail with the diff if it changed."""
    if not IS_ROOT or os.environ.get("TESTBED_ROOT_CHECK") == "0":
        yield
        return
    from testbed.lab import guard

    before = _snapshot()
    labs_before = set(_labs_present())
    drops: Dict[str, int] = {}
    unread: List[str] = []
    real_remove, real_run = guard.remove, subprocess.run

    def remove_recording_drops(lab, block):
        if subprocess.run is real_run:  # not while a test fakes subprocesses
            try:
                if f"-N TB-{lab}" in helpers.iptables_rules():
                    drops[lab] = drops.get(lab, 0) + helpers.iptables_chain_packets(f"TB-{lab}")
            except Exception as exc:  # keep the teardown going; say so at the end
                unread.append(f"{lab}: {exc}")
        return real_remove(lab, block)

    guard.remove = remove_recording_drops
    try:
        yield
    finally:
        if guard.remove is remove_recording_drops:
            guard.remove = real_remove

    deadline = time.monotonic() + SETTLE_S
    while True:
        problems = _differences(before, labs_before)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    foreign = [p for p in problems if p.startswith("lab ") and _someone_elses(p.split()[1])]
    problems = [p for p in problems if p not in foreign]
    escaped = {lab: n for lab, n in drops.items() if n and lab not in DELIBERATE_GUARD_PROBES}
    probes = {lab: n for lab, n in drops.items() if lab in DELIBERATE_GUARD_PROBES}
    _SUMMARY.append((
        f"root namespace check: {len(problems)} difference(s); guard chains read at teardown: "
        f"{len(drops)}, packets dropped {sum(escaped.values())} (deliberate probes: {probes or 'none'})"
        + (f"; other users' labs ignored: {', '.join(p.split()[1] for p in foreign)}" if foreign else "")))
    if unread:
        problems.append(f"guard counters that could not be read at teardown: {unread}")
    if escaped:
        problems.append(f"the guard dropped packets toward labs: {escaped}")
    if problems:
        pytest.fail("the suite changed the root namespace:\n  " + "\n  ".join(problems), pytrace=False)
