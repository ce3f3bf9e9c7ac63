"""``testbed capture``: a pcap of what a lab's link or interface carries, by tcpdump.

Why tcpdump and not scapy: tcpdump takes packets from the kernel's
PACKET_MMAP ring with the filter compiled to BPF in the kernel, so at
gigabit rates only the packets asked for cross to userspace, in batches,
and the kernel counts what it had to drop ("packets dropped by kernel").
scapy's ``sniff`` handles every packet in Python (tens of microseconds
each): it falls behind at a few tens of thousands of packets per second,
which a single TCP flow over a 1 Gbit/s link exceeds
(``benchmarks/capture_speed.py``: tcpdump 99,160 of 100,011 packets, scapy
13,459 of 97,476, on this 2-core machine). scapy reads the pcap back (the
tests do). Immediate mode: without it a Ctrl-C lost the packets still waiting
in a ring block (0 of 10 pings written, measured).

Where: a link with a wire namespace is captured on the wire's ``port-a``
(the side of the link's first node): it sees direction a -> b as node a sent
it (before the link's delay, loss and rate) and b -> a as the link delivers
it to a (after them). An unshaped link (no wire) is captured on node a's
interface. ``NODE:IFACE`` captures that interface inside that node's
namespace (what the node sends and receives). Nothing is captured outside
the lab's own namespaces.

The process: ``ip netns exec NETNS tcpdump -i IFACE -U -w - ...`` (an argv
list), its stdout the pcap file (or our stdout for ``-w -``), killed with
us (PR_SET_PDEATHSIG) and ended by pid on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import IO, List, Optional

from testbed.errors import EnvironmentProblem, InputError, RunError
from testbed.lab.build import list_namespaces
from testbed.lab.plan import WIRE_PORT_A, LabPlan

__all__ = ["Target", "resolve_target", "tcpdump_argv", "run_capture", "CaptureResult", "STOP_WAIT_S"]

STOP_WAIT_S = 3.0  # after SIGTERM, before SIGKILL
BUFFER_KIB = 8192  # tcpdump -B: the kernel ring, so bursts at link rate are not dropped
_PR_SET_PDEATHSIG = 1
_COUNTS = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel)")


@dataclass(frozen=True)
class Target:
    netns: str
    ifname: str
    what: str  # for messages: "link direct (wire _w3, port-a)"


def resolve_target(plan: LabPlan, target: str) -> Target:
    """``LINK`` or ``NODE:IFACE`` of the lab -> where to capture (InputError naming ``target``)."""
    if ":" in target:
        node_name, _, ifname = target.partition(":")
        node = plan.nodes.get(node_name)
        if node is None:
            raise InputError("target", f"no node {node_name!r} in lab {plan.lab!r} "
                             f"(nodes: {', '.join(sorted(plan.nodes))})")
        names = [i.name for i in node.intfs]
        if ifname not in names:
            raise InputError("target", f"node {node_name} has no interface {ifname!r} "
                             f"(interfaces: {', '.join(names) or 'none'})")
        return Target(node.netns, ifname, f"{node_name}:{ifname}")
    links = [l for l in plan.links if l.name == target]
    if not links:
        names = ", ".join(sorted({l.name for l in plan.links}))
        raise InputError("target", f"{target!r} is neither a link (links: {names}) nor NODE:IFACE")
    if len(links) > 1:
        ends = ", ".join(f"{l.a}:{l.a_intf}" for l in links[:4])
        raise InputError("target", f"{len(links)} links are named {target!r}: capture one of them "
                         f"by its end, NODE:IFACE (e.g. {ends})")
    link = links[0]
    if link.wire:
        return Target(link.wire, WIRE_PORT_A, f"link {link.name} ({link.a} side of its wire)")
    return Target(plan.nodes[link.a].netns, link.a_intf,
                  f"link {link.name} (unshaped: {link.a}:{link.a_intf})")


def tcpdump_argv(target: Target, count: Optional[int], bpf: Optional[str]) -> List[str]:
    # --immediate-mode: packets leave the kernel ring as they come (a live viewer sees
    # each at once, and Ctrl-C loses none still waiting for a ring block to fill);
    # when busy the ring is still read in batches
    argv = ["ip", "netns", "exec", target.netns, "tcpdump", "-i", target.ifname, "-n", "-U",
            "--immediate-mode", "-B", str(BUFFER_KIB), "-Z", "root", "-w", "-"]
    if count is not None:
        argv += ["-c", str(count)]
    if bpf:
        argv.append(bpf)  # tcpdump joins its remaining arguments into the filter
    return argv


@dataclass
class CaptureResult:
    returncode: int
    captured: Optional[int]
    received: Optional[int]
    dropped: Optional[int]
    interrupted: bool


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _pump(stream: IO[bytes], sink: IO[str], lines: List[str]) -> None:
    for raw in iter(stream.readline, b""):
        text = raw.decode(errors="replace").rstrip("\n")
        lines.append(text)
        sink.write(text if text.startswith("tcpdump: ") else f"tcpdump: {text}")
        sink.write("\n")
        sink.flush()


def run_capture(plan: LabPlan, target: Target, out_fd: int, count: Optional[int], bpf: Optional[str],
                log: Optional[IO[str]] = None) -> CaptureResult:
    """Run tcpdump into ``out_fd`` until ``count`` packets, or Ctrl-C / SIGTERM (then ended by pid).

    tcpdump's own lines go to ``log`` (default: ``sys.stderr`` as it is at the call).
    """
    log = log if log is not None else sys.stderr
    if not target.netns.startswith(f"tb.{plan.lab}."):  # never outside the lab
        raise RunError(f"refusing to capture in {target.netns}: not a namespace of lab {plan.lab}")
    if target.netns not in set(list_namespaces()):
        raise RunError(f"namespace {target.netns} of lab {plan.lab} is gone (see 'testbed status')")
    argv = tcpdump_argv(target, count, bpf)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=subprocess.PIPE,
                                preexec_fn=_die_with_parent)
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"cannot run {exc.filename}", "apt-get install tcpdump iproute2") from exc
    lines: List[str] = []
    pump = threading.Thread(target=_pump, args=(proc.stderr, log, lines), daemon=True)
    pump.start()
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            _stop(proc)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            _stop(proc)
        pump.join(timeout=STOP_WAIT_S)
    counts = {}
    for line in lines:
        match = _COUNTS.match(line)
        if match:
            counts[match.group(2)] = int(match.group(1))
    last = next((l for l in reversed(lines) if l.strip()), "no output")
    reader_gone = "Broken pipe" in last  # -w - and the reader (wireshark, head) closed: the end
    if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT) and not interrupted and not reader_gone:
        if "syntax error" in last or "expression" in last or "parse" in last:
            raise InputError("filter", f"tcpdump refuses the filter {bpf!r}: {last}")
        raise RunError(f"tcpdump on {target.what} exited {proc.returncode}: {last}")
    return CaptureResult(proc.returncode, counts.get("captured"), counts.get("received by filter"),
                         counts.get("dropped by kernel"), interrupted)


def _raise_interrupt(_signo, _frame):
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to our tcpdump (by its pid: it flushes the pcap), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_WAIT_S)
    except ProcessLookupError:
        pass
