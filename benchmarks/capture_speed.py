"""Capture at speed: tcpdump (what ``testbed capture`` runs) against scapy's sniff on a busy link.

Run as root from the repository root::

    .venv/bin/python benchmarks/capture_speed.py [--time-s 5] [--rate 1Gbit]

A ``pair`` lab ``bench-cap`` with ``link: {rate: RATE}`` (htb only: no delay
line, so the link itself is not the bottleneck of the capture); iperf3 TCP
h1 -> h2 for ``--time-s`` seconds while one capturer listens on the link's
wire port (``port-a``, as ``testbed capture LAB link`` does):

* ``tcpdump``: ``testbed.capture.run_capture`` into /dev/null; its counts
  (captured, dropped by the kernel) from tcpdump's own report;
* ``scapy sniff``: ``scapy.all.sniff`` in a thread switched into the wire's
  namespace (store=False, counting in a callback) for the same time; its
  drops are what the kernel's counters saw on the port minus what it counted.

Packets on the port during the window come from the port's kernel counters
(``/sys/class/net/port-a/statistics`` read inside the wire namespace).
Figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from testbed.capture import resolve_target, run_capture  # noqa: E402
from testbed.lab.lab import Lab  # noqa: E402
from testbed.lab.nssocket import in_netns  # noqa: E402


def _port_packets(netns: str, ifname: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", netns, "cat", f"/sys/class/net/{ifname}/statistics/rx_packets",
                          f"/sys/class/net/{ifname}/statistics/tx_packets"],
                         capture_output=True, text=True, timeout=10, check=True).stdout.split()
    return sum(int(v) for v in out)


def _iperf(lab, time_s: float):
    server = lab.node("h2").popen(["iperf3", "-s", "-1"])
    time.sleep(0.5)
    client = lab.node("h1").popen(["iperf3", "-c", lab.node("h2").ip, "-t", str(time_s), "-J"])
    return server, client


def _tcpdump(lab, target, time_s: float):
    before = _port_packets(target.netns, target.ifname)
    devnull = os.open(os.devnull, os.O_WRONLY)
    server, client = _iperf(lab, time_s)
    result = {}

    def stop_later():
        time.sleep(time_s)
        os.kill(os.getpid(), 2)  # Ctrl-C: run_capture stops tcpdump by its pid

    threading.Thread(target=stop_later, daemon=True).start()
    try:
        res = run_capture(lab.plan, target, devnull, None, None, log=open(os.devnull, "w"))
        result.update(captured=res.captured, dropped=res.dropped)
    finally:
        os.close(devnull)
        client.wait(timeout=time_s + 30)
        server.wait(timeout=30)
    result["on_port"] = _port_packets(target.netns, target.ifname) - before
    return result


def _scapy(lab, target, time_s: float):
    from scapy.all import conf, sniff

    count = [0]
    before = _port_packets(target.netns, target.ifname)
    server, client = _iperf(lab, time_s)

    def run():
        with in_netns(target.netns):
            conf.ifaces.reload()
            sniff(iface=target.ifname, store=False, timeout=time_s,
                  prn=lambda _p: count.__setitem__(0, count[0] + 1))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(time_s + 30)
    client.wait(timeout=time_s + 30)
    server.wait(timeout=30)
    on_port = _port_packets(target.netns, target.ifname) - before
    return {"captured": count[0], "dropped": max(0, on_port - count[0]), "on_port": on_port}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-s", type=float, default=5.0)
    parser.add_argument("--rate", default="1Gbit")
    args = parser.parse_args()
    print(f"capture on a {args.rate} link during {args.time_s:g} s of iperf3 TCP (noisy: shared machine)")
    print(f"{'capturer':<14} {'on port':>10} {'captured':>10} {'dropped':>10}")
    for name, fn in (("tcpdump", _tcpdump), ("scapy sniff", _scapy)):
        with Lab.create("pair", "bench-cap", links={"link": {"rate": args.rate}}) as lab:
            target = resolve_target(lab.plan, "link")
            try:
                row = fn(lab, target, args.time_s)
            except KeyboardInterrupt:
                continue
            print(f"{name:<14} {row['on_port']:>10} {row['captured'] or 0:>10} {row['dropped'] or 0:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
