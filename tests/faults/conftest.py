"""Oracles and fixtures of the fault suite: does a lab leave anything behind?

Everything here reads the kernel's own tools and /proc, never the testbed's
view of itself (STYLE: an independent oracle):

* namespaces: ``ip -json netns list`` and the inodes of ``/run/netns/*``;
* root-namespace interfaces, qdiscs and rules: ``ip -json link``,
  ``tc -json qdisc``, ``iptables -S`` (every table), and the NFQUEUE bindings
  of ``/proc/net/netfilter/nfnetlink_queue``;
* processes: ``/proc/<pid>/stat`` (pid + start time names one process for
  good) and ``/proc/<pid>/ns/net`` (which namespace a process lives in).

A :class:`LabTrace` is taken while a lab is up (its namespaces with their
inodes, its address block, every process seen in it or recorded for it);
:func:`lab_leftovers` lists what of it still exists afterwards. The soak
script (``benchmarks/soak.py``) loads this file too, so the suite and the soak
judge leftovers the same way.

Labs made here are named ``ft-...``; labs of ``testbed run`` are named by the
testbed (``run<pid>-<i>``) and are ours because we started that pid.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/helpers.py

import helpers  # noqa: E402

__all__ = [
    "IS_ROOT",
    "ROOT_REASON",
    "FT_PREFIX",
    "FAULT_SCENARIO",
    "LabTrace",
    "RunProcess",
    "proc_info",
    "descendants",
    "netns_inode",
    "pids_in_netns",
    "foreign_links",
    "root_state",
    "root_changes",
    "trace_lab",
    "lab_leftovers",
    "wait_no_leftovers",
    "traffic_problems",
    "open_fds",
    "thread_count",
    "vm_rss_kib",
]

IS_ROOT = os.geteuid() == 0
ROOT_REASON = "the fault suite needs root to create network namespaces (run with sudo)"
FT_PREFIX = "ft-"
NETNS_DIR = Path("/run/netns")
NFQUEUE_PROC = Path("/proc/net/netfilter/nfnetlink_queue")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
CLI = [sys.executable, "-m", "testbed.cli"]

#: A small scenario for the fault runs: one shaped link (so, without netem, a
#: delay line process), ping then TCP. ``--set measure.tcp.duration_s=10``
#: leaves time to interrupt the TCP step.
FAULT_SCENARIO = """\
name: ft-fault
description: fault-suite scenario (pair, one shaped link, ping then TCP)
topology: pair
links:
  link: {rate: 200Mbit, delay: 2ms}
variants:
  - name: only
measure:
  ping: {count: 10, interval_s: 0.05}
  tcp: {duration_s: 3}
quick:
  measure.tcp.duration_s: 2
"""


# -- processes -------------------------------------------------------------------

def proc_info(pid: int) -> Optional[Tuple[int, int, str]]:
    """(ppid, start time in ticks, state letter) of ``pid`` from /proc, None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _all_pids() -> List[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def descendants(pid: int) -> Dict[int, int]:
    """pid -> start time of every living descendant of ``pid`` (not ``pid`` itself)."""
    children: Dict[int, List[Tuple[int, int]]] = {}
    for other in _all_pids():
        info = proc_info(other)
        if info is not None:
            children.setdefault(info[0], []).append((other, info[1]))
    found: Dict[int, int] = {}
    todo = [pid]
    while todo:
        for child, start in children.get(todo.pop(), []):
            if child not in found:
                found[child] = start
                todo.append(child)
    return found


def _alive(pid: int, start: int) -> bool:
    info = proc_info(pid)
    return info is not None and info[1] == start and info[2] != "Z"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def netns_inode(name: str) -> Optional[Tuple[int, int]]:
    """(st_dev, st_ino) of named namespace ``name``: its identity."""
    try:
        st = os.stat(NETNS_DIR / name)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(inodes: Iterable[Tuple[int, int]]) -> Dict[int, int]:
    """pid -> start time of every process whose network namespace is one of ``inodes``."""
    wanted = set(inodes)
    found: Dict[int, int] = {}
    if not wanted:
        return found
    for pid in _all_pids():
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in wanted:
            info = proc_info(pid)
            if info is not None and info[2] != "Z":
                found[pid] = info[1]
    return found


def open_fds() -> int:
    """Open file descriptors of this process (/proc/self/fd)."""
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    """Kernel threads of this process (/proc/self/status ``Threads:``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/self/status")


def vm_rss_kib(pid: int) -> Optional[int]:
    """Resident memory of ``pid`` in KiB (/proc/<pid>/status ``VmRSS:``), None if gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# -- the root namespace ------------------------------------------------------------

def _foreign_tb_line(line: str, ours: Sequence[str]) -> bool:
    """An iptables line about another lab's guard chain (labs may come and go meanwhile)."""
    chains = re.findall(r"TB-[a-z0-9-]+", line)
    return bool(chains) and not any(c[len("TB-"):] in ours for c in chains)


def foreign_links(links: Sequence[dict]) -> Set[str]:
    """Root interfaces that another live namespace explains (``ip -json link`` entries).

    A veth whose peer lives in another namespace (``link_netnsid``), and a
    bridge whose ports are all such veths, exist because of that namespace --
    someone else's (Mininet on the same machine), or a lab's, whose leftover
    namespace is reported by name anyway. Comparisons leave them out.
    """
    peered = {l["ifname"] for l in links if "link_netnsid" in l}
    ports: Dict[str, Set[str]] = {}
    for link in links:
        if link.get("master"):
            ports.setdefault(link["master"], set()).add(link["ifname"])
    return peered | {bridge for bridge, members in ports.items() if members <= peered}


def root_state(ours: Sequence[str] = ()) -> dict:
    """What a lab must never leave changed in the root namespace.

    Interfaces (``ip -json link``), qdiscs (``tc -json qdisc``), the NFQUEUE
    bindings, and every table's ``iptables -S`` minus other labs' guard lines
    (``ours``: lab names whose ``TB-`` lines are kept).
    """
    links = helpers.ip_json(["link", "show"])
    qdiscs = json.loads(helpers.run_cmd(["tc", "-json", "qdisc", "show"]).stdout or "[]")
    try:
        nfqueue = NFQUEUE_PROC.read_text()
    except OSError:
        nfqueue = ""
    rules = {t: [r for r in helpers.iptables_rules(table=t) if not _foreign_tb_line(r, ours)]
             for t in IPTABLES_TABLES}
    return {"links": links, "qdiscs": qdiscs, "nfqueue": nfqueue, "iptables": rules}


def root_changes(before: dict, after: dict) -> List[str]:
    """Differences between two :func:`root_state` results, other namespaces' veths left out."""
    skip = foreign_links(before["links"]) | foreign_links(after["links"])

    def comparable(state: dict) -> dict:
        return {
            "links": sorted(l["ifname"] for l in state["links"] if l["ifname"] not in skip),
            "qdiscs": [q for q in state["qdiscs"] if q.get("dev") not in skip],
            "nfqueue": state["nfqueue"],
            "iptables": state["iptables"],
        }

    a, b = comparable(before), comparable(after)
    return [f"root {key} changed: " + "; ".join(helpers.diff_snapshots({key: a[key]}, {key: b[key]}))
            for key in a if a[key] != b[key]]


# -- one lab ---------------------------------------------------------------------------

@dataclass
class LabTrace:
    """What a lab was made of, seen while it was up."""

    lab: str
    block: Optional[str] = None
    namespaces: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    procs: Dict[int, int] = field(default_factory=dict)  # pid -> start time
    ifnames: Set[str] = field(default_factory=set)  # interfaces inside its namespaces

    def merge(self, other: "LabTrace") -> "LabTrace":
        self.block = self.block or other.block
        self.namespaces.update(other.namespaces)
        self.procs.update(other.procs)
        self.ifnames |= other.ifnames
        return self


def _state_doc(lab: str) -> dict:
    try:
        return json.loads((helpers.STATE_DIR / lab / "lab.json").read_text())
    except (OSError, ValueError):
        return {}


def trace_lab(lab: str, extra: Optional[Dict[int, int]] = None) -> LabTrace:
    """Namespaces (with inodes), block and processes of ``lab`` right now.

    Processes: those the lab recorded in its state (delay lines) and every
    process living in one of its namespaces, plus ``extra`` (pid -> start).
    """
    doc = _state_doc(lab)
    namespaces = {n: i for n in helpers.lab_netns_names(lab)
                  for i in [netns_inode(n)] if i is not None}
    procs = {int(p["pid"]): int(p["start"]) for p in doc.get("procs", [])}
    procs.update(pids_in_netns(namespaces.values()))
    procs.update(extra or {})
    ifnames = {l["ifname"] for n in namespaces for l in _links_in(n) if l["ifname"] != "lo"}
    return LabTrace(lab=lab, block=doc.get("block"), namespaces=namespaces, procs=procs,
                    ifnames=ifnames)


def _links_in(netns: str) -> List[dict]:
    proc = helpers.run_cmd(["ip", "-json", "-n", netns, "link", "show"], check=False)
    return json.loads(proc.stdout or "[]") if proc.returncode == 0 else []


def lab_leftovers(trace: LabTrace, baseline: Optional[dict] = None) -> List[str]:
    """Everything of the traced lab that still exists (empty: nothing left).

    ``baseline``: a :func:`root_state` from before the lab (see :func:`root_changes`).
    """
    lab = trace.lab
    found = [f"namespace {n}" for n in helpers.lab_netns_names(lab)]
    if (helpers.STATE_DIR / lab).exists():
        found.append(f"state dir {helpers.STATE_DIR / lab}")
    for table in IPTABLES_TABLES:
        for rule in helpers.iptables_rules(table=table):
            tokens = rule.split()
            if f"TB-{lab}" in tokens or (trace.block and trace.block in tokens):
                found.append(f"iptables -t {table}: {rule}")
    for pid, start in sorted(trace.procs.items()):
        if _alive(pid, start):
            found.append(f"process {pid} ({_cmdline(pid)})")
    # a process holding one of the lab's namespaces after its name is gone
    named = {i for n in helpers.netns_names() for i in [netns_inode(n)] if i is not None}
    orphaned = set(trace.namespaces.values()) - named
    for pid in pids_in_netns(orphaned):
        found.append(f"process {pid} ({_cmdline(pid)}) in a removed lab namespace")
    root_links = helpers.ip_json(["link", "show"])
    found += [f"root interface {l['ifname']} (the lab had one of that name)"
              for l in root_links if l["ifname"] in trace.ifnames]
    if baseline is not None:
        found += root_changes(baseline, root_state([lab]))
    return found


def wait_no_leftovers(trace: LabTrace, baseline: Optional[dict] = None,
                      timeout_s: float = 10.0) -> List[str]:
    """Poll :func:`lab_leftovers` until empty or ``timeout_s``; return the last answer.

    Killed processes are reaped by init a moment after their parent died.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        left = lab_leftovers(trace, baseline)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# -- traffic across a lab ---------------------------------------------------------------

def _wait_listening(netns: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = helpers.run_cmd(["ss", "-N", netns, "-Hltn", f"sport = :{port}"], check=False).stdout
        if out.strip():
            return True
        time.sleep(0.02)
    return False


def traffic_problems(lab: str, src: str = "h1", dst: str = "h2", port: int = 5201) -> List[str]:
    """A ping and a 1-second iperf3 TCP transfer between two hosts of ``lab``.

    Run with ``ip netns exec`` directly (not the testbed's runners). Returns
    what failed; empty means traffic crosses the lab.
    """
    src_ns, dst_ns = f"tb.{lab}.{src}", f"tb.{lab}.{dst}"
    doc = _state_doc(lab)
    dst_ip = doc.get("plan", {}).get("nodes", {}).get(dst, {}).get("ip")
    if not dst_ip:
        return [f"lab {lab} has no address for {dst} in its state"]
    problems = []
    ping = helpers.run_cmd(["ip", "netns", "exec", src_ns, "ping", "-n", "-c", "3", "-i", "0.2",
                            "-W", "2", dst_ip], timeout_s=15, check=False)
    if ping.returncode != 0:
        problems.append(f"ping {src} -> {dst} failed: {ping.stdout.strip()[-200:]}")
    server = subprocess.Popen(["ip", "netns", "exec", dst_ns, "iperf3", "-s", "-1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not _wait_listening(dst_ns, port, 5.0):
            problems.append(f"iperf3 server in {dst_ns} not listening on {port}")
        else:
            client = helpers.run_cmd(["ip", "netns", "exec", src_ns, "iperf3", "-c", dst_ip, "-p",
                                      str(port), "-t", "1", "-J", "--connect-timeout", "3000"],
                                     timeout_s=20, check=False)
            try:
                bps = json.loads(client.stdout)["end"]["sum_received"]["bits_per_second"]
            except (ValueError, KeyError, TypeError):
                bps = 0
            if client.returncode != 0 or not bps > 0:
                problems.append(f"iperf3 {src} -> {dst} failed: {client.stdout.strip()[-300:]}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
    return problems


# -- a `testbed run` in a subprocess ------------------------------------------------------

def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RunProcess:
    """``python -m testbed.cli run ...`` started by us, its stdout read line by line.

    With ``new_session`` the run leads its own process group, so a signal can
    go to the whole group as a terminal's Ctrl-C would. The run starts with
    SIGINT at its default, as from a terminal: started from a background job
    (``cmd &``, nohup) it would inherit SIGINT ignored, as POSIX wants.
    """

    def __init__(self, args: Sequence[str], workdir: Path, new_session: bool = False,
                 env: Optional[Dict[str, str]] = None):
        self.stderr_path = workdir / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            CLI + ["run", *args], stdout=subprocess.PIPE, stderr=self._stderr,
            stdin=subprocess.DEVNULL, cwd=str(workdir), env=env or helpers.subprocess_env(),
            start_new_session=new_session, preexec_fn=_default_sigint)
        self.pid = self.proc.pid
        self.lab = f"run{self.pid % 100000}-0"
        self.lines: List[str] = []
        self._buffer = b""

    def wait_for(self, marker: str, timeout_s: float) -> str:
        """Read stdout until a line containing ``marker``; AssertionError on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, _, self._buffer = self._buffer.partition(b"\n")
                text = line.decode(errors="replace")
                self.lines.append(text)
                if marker in text:
                    return text
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} from the run within {timeout_s:g} s:\n"
                                     + self.output())
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"the run exited before {marker!r}:\n" + self.output())
                self._buffer += chunk

    def signal(self, signo: int, group: bool = False) -> None:
        """Send ``signo`` to the run (or to its whole process group: ours, made at start)."""
        if group:
            os.killpg(self.pid, signo)
        else:
            os.kill(self.pid, signo)

    def finish(self, timeout_s: float) -> int:
        """Wait for the exit code, reading the rest of stdout."""
        rest, _ = self.proc.communicate(timeout=timeout_s)
        self.lines += (self._buffer + (rest or b"")).decode(errors="replace").splitlines()
        self._buffer = b""
        return self.proc.returncode

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr()

    def close(self) -> None:
        """Kill the run if it still runs (our child, by its pid) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()


def wait_for_procs_in(netns: str, timeout_s: float, count: int = 1) -> Dict[int, int]:
    """Poll until ``count`` processes live in named namespace ``netns``."""
    deadline = time.monotonic() + timeout_s
    while True:
        inode = netns_inode(netns)
        found = pids_in_netns([inode]) if inode else {}
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no process in {netns} within {timeout_s:g} s")
        time.sleep(0.02)


def netem_available() -> bool:
    """Does this kernel take a netem qdisc? Tried in a scratch namespace we remove again."""
    name = f"ftnetem-{os.getpid()}"
    helpers.run_cmd(["ip", "netns", "add", name])
    try:
        proc = helpers.run_cmd(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "netem",
                                "delay", "1ms"], check=False)
        return proc.returncode == 0
    finally:
        helpers.run_cmd(["ip", "netns", "del", name], check=False)


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def require_root():
    if not IS_ROOT:
        pytest.skip(ROOT_REASON)


@pytest.fixture
def fault_scenario(tmp_path) -> Path:
    path = tmp_path / "ft-fault.yaml"
    path.write_text(FAULT_SCENARIO)
    return path


def remove_ft_lab(name: str) -> None:
    """Tear down one of OUR labs (``ft-...``) if any piece of it exists."""
    if not name.startswith(FT_PREFIX) and not re.fullmatch(r"run\d+-\d+", name):
        raise ValueError(f"not a lab of the fault suite: {name!r}")
    if helpers.lab_netns_names(name) or (helpers.STATE_DIR / name).exists() or any(
            f"TB-{name}" in r.split() for r in helpers.iptables_rules()):
        from testbed.lab import teardown

        teardown.teardown(name)


@pytest.fixture
def ft_labs():
    """Create labs with ``Lab.create``; every one is torn down at the end, even on failure."""
    from testbed.lab.lab import Lab

    made: Dict[str, None] = {}

    def create(topology: str, name: str, **kwargs):
        if not name.startswith(FT_PREFIX):
            raise ValueError(f"fault-suite lab names start with {FT_PREFIX!r}: {name!r}")
        if name not in made:
            remove_ft_lab(name)  # a leftover of an interrupted earlier session
        made[name] = None
        return Lab.create(topology, name=name, **kwargs)

    try:
        yield create
    finally:
        for name in made:
            remove_ft_lab(name)


@pytest.fixture(scope="module")
def bystander():
    """A lab of ours that stays up while other labs are killed and cleaned around it."""
    if not IS_ROOT:
        pytest.skip(ROOT_REASON)
    from testbed.lab.lab import Lab

    name = f"ft-by{os.getpid() % 10000}"
    remove_ft_lab(name)
    lab = Lab.create("pair", name=name, links={"link": {"delay": "1ms"}})
    try:
        problems = traffic_problems(name)
        assert not problems, f"bystander lab {name} does not carry traffic at the start: {problems}"
        yield lab
    finally:
        remove_ft_lab(name)


__all__ += ["wait_for_procs_in", "netem_available", "remove_ft_lab"]


@pytest.fixture(scope="session")
def ft():
    """This file's oracles for the tests: ``ft.trace_lab(...)``, ``ft.lab_leftovers(...)`` ..."""
    return SimpleNamespace(**{name: globals()[name] for name in __all__})
