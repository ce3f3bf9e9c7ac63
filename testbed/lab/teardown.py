"""Removing a lab: exactly what it made, found by its name or by pid.

Order matters: processes first (a namespace with a live process in it outlives
``ip netns del``), then the namespaces (their veths, bridges, qdiscs and
iptables rules go with them), then the root-namespace guard, then the state.

Processes are the ones the lab recorded (pid + start time) and any other
process whose network namespace is one of the lab's own namespaces (compared
by inode, i.e. by identity, never by name or pattern).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Dict, List, Optional, Tuple

from testbed.lab import build, guard, hostsfile, procs, state
from testbed.lab.naming import NETNS_PREFIX, lab_of_netns

__all__ = ["teardown", "lab_namespaces", "pids_in_namespaces", "orphan_labs"]

NETNS_DIR = "/run/netns"
KILL_WAIT_S = 3.0


def lab_namespaces(lab: str) -> List[str]:
    return [n for n in build.list_namespaces() if lab_of_netns(n) == lab]


def _ns_ids(names: List[str]) -> Dict[Tuple[int, int], str]:
    ids = {}
    for name in names:
        try:
            st = os.stat(os.path.join(NETNS_DIR, name))
        except OSError:
            continue
        ids[(st.st_dev, st.st_ino)] = name
    return ids


def pids_in_namespaces(names: List[str]) -> Dict[int, str]:
    """pid -> namespace, for every process living in one of ``names``."""
    ids = _ns_ids(names)
    found: Dict[int, str] = {}
    if not ids:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        name = ids.get((st.st_dev, st.st_ino))
        if name:
            found[int(entry)] = name
    return found


def _kill_pids(pids: List[int]) -> None:
    starts = {pid: procs.start_time(pid) for pid in pids}
    for pid, start in starts.items():
        if start is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        alive = [p for p, s in starts.items() if s is not None and procs.is_alive(p, s)]
        for pid in alive:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not alive:
            return
        time.sleep(0.02)
    for pid, start in starts.items():
        if start is not None and procs.is_alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def teardown(lab: str) -> dict:
    """Remove everything of ``lab``; returns what was removed."""
    doc = state.read_state(lab) or {}
    reached = None
    if doc.get("cluster"):  # a lab across machines: every machine removes its slice first
        from testbed.cluster.control import down_machines

        reached = down_machines(lab, doc["cluster"])
    records = [procs.ProcRecord(**r) for r in doc.get("procs", [])]
    for rec in records:
        procs.stop(rec)
    names = lab_namespaces(lab)
    if doc.get("slice"):
        # one machine's slice: only its own namespaces (one-box stand-ins share /run/netns)
        own = set(doc["slice"].get("namespaces", []))
        names = [n for n in names if n in own]
    strays = pids_in_namespaces(names)
    _kill_pids(list(strays))
    for name in names:
        build.remove_namespace(name)
    guard.remove(lab, doc.get("block"))
    if not doc.get("slice"):
        hostsfile.remove(lab)
    if doc.get("cluster"):
        from testbed.cluster.control import forget_machines

        forget_machines(lab, doc["cluster"])
    state.remove_lab_dir(lab)
    out = {"lab": lab, "namespaces": len(names), "processes": len(records) + len(strays)}
    if reached is not None:
        out["machines"] = reached
    return out


def orphan_labs() -> List[str]:
    """Labs with namespaces or a guard chain but no state directory."""
    known = set(state.lab_names())
    # slices of labs across machines kept here (their coordinator is elsewhere, or is us)
    known |= {p.name for p in state.state_dir().glob(".machines/*/*") if p.is_dir()}
    seen = {lab_of_netns(n) for n in build.list_namespaces() if n.startswith(NETNS_PREFIX)}
    seen |= {c[len("TB-"):] for c in guard.chains()}
    seen |= {lab_of_netns(n) for n in hostsfile.leftovers()}
    return sorted(l for l in seen if l and l not in known)


def owner_alive(doc: Optional[dict]) -> bool:
    """True if the lab has no owner (a persistent lab) or its owner still runs.

    A lab still ``creating`` belongs to the process creating it (its
    ``creator``): once that is gone the half-built lab is debris.
    """
    doc = doc or {}
    creator = doc.get("creator")
    if doc.get("status") == "creating" and creator and not procs.is_alive(creator["pid"], creator["start"]):
        return False
    owner = doc.get("owner")
    if not owner:
        return True
    return procs.is_alive(owner["pid"], owner["start"])
