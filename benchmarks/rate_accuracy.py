"""TCP goodput against the configured rate: testbed ``pair`` links beside Mininet's TCLink.

Run as root from the repository root::

    /tmp/venv/bin/python benchmarks/rate_accuracy.py [--rates 100Mbit,1Gbit,5Gbit,10Gbit]
        [--time-s 5] [--streams 4] [--repeats 3] [--skip-mininet]

For each rate, in the same run:

* testbed: ``Lab.create("pair", name="bench-rate", links={"link": {"rate": R}})``
  (htb in the link's wire namespace, default queue), iperf3 TCP h1 -> h2;
* Mininet: a 2-host net ``Mininet(topo, link=TCLink, switch=LinuxBridge,
  controller=None)`` with ``bw`` = R in Mbit on both host links (hosts
  ``bh1``/``bh2``, switch ``bs1``), the same iperf3 run. Mininet refuses
  ``bw`` above 1000 Mbit and leaves the link unshaped; that case is shown as
  "refused (link left unshaped)" with what the unshaped link carried.

Expected goodput is the rate after header overhead: a 1500-byte packet
carries 1448 bytes of TCP payload (20 IP + 20 TCP + 12 timestamp option) in
1514 bytes counted by htb. The table shows the median of ``--repeats`` runs
and its ratio to the expected goodput (target: at least 0.95). Both hosts get
a 64 MiB TCP buffer maximum so the window is never the limit. Every lab is
destroyed and every Mininet net stopped with ``net.stop()`` in ``finally``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from testbed.units import parse_rate_bps  # noqa: E402

__all__ = ["expected_goodput_bps", "measure_testbed", "measure_mininet", "main"]

LAB_NAME = "bench-rate"
TCP_IP_HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps 12
ETHERNET_HEADER_BYTES = 14  # what htb counts beyond the IP packet
MTU_BYTES = 1500
MININET_MAX_MBIT = 1000  # mininet.link.TCIntf.bwParamMax
IPERF_PORT = 5302
CMD_TIMEOUT_S = 10.0
BIG_BUF = "4096 131072 67108864"
HOST_SYSCTLS = {"net.ipv4.tcp_rmem": BIG_BUF, "net.ipv4.tcp_wmem": BIG_BUF}
TARGET_RATIO = 0.95


def expected_goodput_bps(rate_bps: float, mtu: int = MTU_BYTES) -> float:
    """TCP payload rate of a link of ``rate_bps`` (full-size segments with timestamps)."""
    return rate_bps * (mtu - TCP_IP_HEADER_BYTES) / (mtu + ETHERNET_HEADER_BYTES)


# -- testbed ------------------------------------------------------------------

def measure_testbed(rate_bps: int, seconds: float, streams: int, repeats: int) -> List[float]:
    """Receiver goodput (bit/s) of each repeat on a fresh ``pair`` lab."""
    from testbed.lab import teardown
    from testbed.lab.lab import Lab
    from testbed.measure import RUNNERS

    teardown.teardown(LAB_NAME)  # a leftover of an interrupted earlier run: ours by name
    out = []
    with Lab.create("pair", name=LAB_NAME, links={"link": {"rate": f"{rate_bps}bit"}},
                    host_sysctls=HOST_SYSCTLS) as lab:
        for _ in range(repeats):
            result = RUNNERS["tcp"].run(lab.node("h1"), lab.node("h2"), duration_s=seconds,
                                        streams=streams, port=IPERF_PORT)
            out.append(result["throughput_mbps"] * 1e6)
    return out


# -- Mininet ------------------------------------------------------------------

def _two_hosts(link_opts: dict):
    from mininet.topo import Topo

    class _Two(Topo):
        def build(self):
            switch = self.addSwitch("bs1")
            for name in ("bh1", "bh2"):
                self.addLink(self.addHost(name), switch, **link_opts)

    return _Two()


def _communicate(proc: subprocess.Popen, timeout_s: float) -> Tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own pid
        proc.communicate(timeout=5)
        raise RuntimeError(f"{proc.args[:3]} in a Mininet host did not finish in time")
    dec = (lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or ""))
    return dec(out), dec(err)


def _host_cmd(host, argv: List[str], timeout_s: float = CMD_TIMEOUT_S) -> str:
    proc = host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = _communicate(proc, timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} in {host.name} failed ({proc.returncode}): {err.strip()}")
    return out


def _mininet_iperf(src, dst, seconds: float, streams: int) -> float:
    server = dst.popen(["iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # poll until the server accepts (iperf3 reports refusals as JSON)
            client = src.popen(["iperf3", "-c", dst.IP(), "-p", str(IPERF_PORT), "-J",
                                "-t", f"{seconds:g}", "-P", str(streams)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, _err = _communicate(client, seconds + 30)
            try:
                doc = json.loads(out)
            except ValueError:
                doc = {"error": out.strip()[:200] or "no output"}
            if "error" not in doc:
                return float(doc["end"]["sum_received"]["bits_per_second"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"iperf3 between Mininet hosts failed: {doc['error']}")
            time.sleep(0.1)
    finally:
        if server.poll() is None:
            server.kill()  # our own pid
        server.wait(timeout=5)


def measure_mininet(rate_bps: int, seconds: float, streams: int,
                    repeats: int) -> Tuple[List[float], bool]:
    """(goodputs in bit/s, shaped?) for a 2-host TCLink net at ``rate_bps``."""
    from mininet.link import TCLink
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.nodelib import LinuxBridge

    setLogLevel("error")  # Mininet still logs its refusal of bw > 1000 at "error"
    net = Mininet(_two_hosts({"bw": rate_bps / 1e6}), link=TCLink, switch=LinuxBridge,
                  controller=None, autoSetMacs=True)
    try:
        net.start()
        h1, h2 = net.get("bh1"), net.get("bh2")
        for host in (h1, h2):
            for key in HOST_SYSCTLS:
                _host_cmd(host, ["sysctl", "-q", "-w", f"{key}={BIG_BUF}"])
        shaped = "htb" in _host_cmd(h1, ["tc", "qdisc", "show", "dev", h1.defaultIntf().name])
        return [_mininet_iperf(h1, h2, seconds, streams) for _ in range(repeats)], shaped
    finally:
        net.stop()


# -- main ---------------------------------------------------------------------

def _fmt_mbit(bps: float) -> str:
    return f"{bps / 1e6:9.1f}"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100Mbit,1Gbit,5Gbit,10Gbit")
    ap.add_argument("--time-s", type=float, default=5.0, help="iperf3 seconds per run (default 5)")
    ap.add_argument("--streams", type=int, default=4, help="parallel TCP streams (default 4: iperf3 under-reads near 10 Gbit/s with fewer, FACTS.md)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per case; the median is shown")
    ap.add_argument("--skip-mininet", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("needs root (network namespaces)\n")
        return 3
    rates = [parse_rate_bps(r.strip(), "--rates") for r in args.rates.split(",")]
    load_before = os.getloadavg()
    rows = []
    for rate in rates:
        expected = expected_goodput_bps(rate)
        tb = measure_testbed(rate, args.time_s, args.streams, args.repeats)
        rows.append((f"{rate / 1e6:g} Mbit", "testbed pair (htb)", expected, tb, ""))
        if args.skip_mininet:
            continue
        mn, shaped = measure_mininet(rate, args.time_s, args.streams, args.repeats)
        note = "" if shaped else "refused (link left unshaped)"
        if rate / 1e6 > MININET_MAX_MBIT and shaped:
            note = "accepted above 1000 Mbit?"
        rows.append((f"{rate / 1e6:g} Mbit", "Mininet TCLink", expected, mn, note))
    load_after = os.getloadavg()

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    print(f"machine: {os.cpu_count()} CPUs, kernel {platform.release()}, {now}; "
          f"load {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)")
    print(f"iperf3 TCP -P {args.streams}, {args.time_s:g} s, median of {args.repeats}; "
          f"expected = rate x {MTU_BYTES - TCP_IP_HEADER_BYTES}/{MTU_BYTES + ETHERNET_HEADER_BYTES}")
    print(f"{'rate':>10}  {'emulator':20} {'expected':>9} {'goodput':>9} {'ratio':>6}  "
          f"{'runs Mbit/s':28} note")
    for label, who, expected, samples, note in rows:
        med = statistics.median(samples)
        ratio = med / expected
        if not note:
            note = "ok" if ratio >= TARGET_RATIO else f"below {TARGET_RATIO}"
        runs = " ".join(f"{s / 1e6:.0f}" for s in samples)
        print(f"{label:>10}  {who:20} {_fmt_mbit(expected)} {_fmt_mbit(med)} {ratio:6.3f}  "
              f"{runs:28} {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
