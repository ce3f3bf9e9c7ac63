"""The same variant on one machine and across two (one-box stand-ins): RTT and TCP side by side.

Run as root from the repository root::

    /tmp/venv/bin/python benchmarks/across_machines.py [--path direct|transit] [--rate 1Gbit]
        [--delay 1ms] [--time-s 3] [--repeats 3] [--count 50]

Two ``two-clouds`` labs with the same links, one after the other:

* ``bench-am1``: one machine (``Lab.create``), as every other scenario runs;
* ``bench-am2``: across two stand-in machines (``create_cluster_lab`` with
  ``placement {cw: m1, gcp: m2}``): each cloud's slice built by its own
  agent over ssh, the crossing link a VXLAN tunnel over the stand-ins' veth
  underlay, every command to a host sent over ssh (ControlMaster shared).

For each: ping cw-h1 -> gcp-h1 (``--count`` at 20 ms, mean and p50), iperf3
TCP (``--time-s``, one stream, cubic), median of ``--repeats``; and for the
stand-ins the underlay figures measured before the lab was built. The
crossing link's rate is the one the link is configured with (``--rate``,
default 1 Gbit/s so that both labs shape to the same bottleneck on a
two-core machine). Figures measured while other work runs on the same cores
are noisy: the load average is printed before and after. Both labs are torn
down in ``finally`` (``Lab.destroy``; for the stand-ins that reaches both
machines and stops the sshds this script's lab started, by pid).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.cluster.create import create_cluster_lab  # noqa: E402
from testbed.lab import state, teardown  # noqa: E402
from testbed.lab.lab import Lab  # noqa: E402
from testbed.steps.kind import tool_runner  # noqa: E402

SYSCTLS = {"net.ipv4.tcp_rmem": "4096 131072 67108864", "net.ipv4.tcp_wmem": "4096 16384 67108864"}


def _measure(lab, count: int, time_s: float, repeats: int) -> dict:
    src, dst = lab.node("cw-h1"), lab.node("gcp-h1")
    ping = tool_runner("ping").run(src, dst, count=count, interval_s=0.02)
    tcps = [tool_runner("tcp").run(src, dst, duration_s=time_s, streams=1, congestion="cubic")["throughput_mbps"]
            for _ in range(repeats)]
    return {"rtt_mean_ms": ping["rtt_ms"]["mean"], "rtt_p50_ms": ping["rtt_ms"].get("p50"),
            "tcp_mbps": statistics.median(tcps), "tcp_all": tcps, "up_s": lab.doc.get("ready_after_s")}


def _clear(name: str) -> None:
    if state.read_state(name) or teardown.lab_namespaces(name):
        teardown.teardown(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=("direct", "transit"), default="direct")
    parser.add_argument("--rate", default="1Gbit")
    parser.add_argument("--delay", default="1ms")
    parser.add_argument("--time-s", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 3
    links = {"direct": {"preset": "direct-interconnect", "rate": args.rate, "delay": args.delay},
             "transit-hop": {"preset": "internet-transit", "rate": args.rate}}
    params = {"path": args.path, "transit_hops": 2}
    print(f"load average before: {os.getloadavg()}")
    rows = {}
    for name in ("bench-am1", "bench-am2"):
        _clear(name)
    one = Lab.create("two-clouds", "bench-am1", params=params, links=links, host_sysctls=SYSCTLS,
                     strict_links=False)
    try:
        rows["one machine"] = _measure(one, args.count, args.time_s, args.repeats)
    finally:
        one.destroy()
    two = create_cluster_lab("two-clouds", "bench-am2", params=params, links=links, host_sysctls=SYSCTLS,
                             placement={"cw": "m1", "gcp": "m2"}, strict_links=False)
    try:
        rows["two machines (one-box)"] = _measure(two, args.count, args.time_s, args.repeats)
        under = two.doc["cluster"]["underlay"]
    finally:
        two.destroy()
    print(f"load average after: {os.getloadavg()}")
    print(f"\ntwo-clouds path={args.path}, crossing link {args.rate} / {args.delay}; "
          f"ping {args.count} x 20 ms, TCP {args.time_s:g} s x {args.repeats} (median)\n")
    print(f"| {'lab':<24} | {'RTT mean (ms)':>13} | {'RTT p50 (ms)':>12} | {'TCP (Mbit/s)':>12} | TCP runs |")
    print(f"|{'-' * 26}|{'-' * 15}|{'-' * 14}|{'-' * 14}|----------|")
    for label, r in rows.items():
        runs = ", ".join(f"{x:.0f}" for x in r["tcp_all"])
        print(f"| {label:<24} | {r['rtt_mean_ms']:>13.3f} | {r['rtt_p50_ms'] or 0:>12.3f} | "
              f"{r['tcp_mbps']:>12.1f} | {runs} |")
    for pair in under:
        print(f"\nunderlay {pair['a']} - {pair['b']} (veth + bridge between stand-ins): MTU {pair['mtu']}, "
              f"RTT {pair['rtt_ms']} ms, TCP {pair['tcp_mbps']} Mbit/s (one stream, 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
