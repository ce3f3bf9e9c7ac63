"""Lab bring-up and teardown time of N hosts on one switch: testbed beside Mininet.

Run as root from the repository root::

    python benchmarks/lab_scale.py [--hosts 256,1024] [--per-site 256,512] [--skip-mininet-above 1024]

For each size N, in the same run:

* testbed: ``Lab.create("star", name="bench-scale", params={"hosts": N})``
  timed until it returns (namespaces, veths, addresses, sysctls, and every
  port forwarding), then ``lab.destroy()`` timed;
* Mininet: ``Mininet(topo, switch=LinuxBridge, controller=None)`` with the
  same N hosts on one switch (hosts ``bh1..bhN``, switch ``bs1``), timed over
  the constructor (which builds) plus ``net.start()``, then ``net.stop()``
  timed. Mininet is skipped above ``--skip-mininet-above`` hosts.

Targets (issue 5): 256 hosts up and down in at most 3 s in total, 1024 in at
most 12 s. A Linux bridge takes at most 1023 ports, so above 1000 hosts the
star topology spreads them over leaf switches under a spine (Mininet gets the
same topology). The ratio column is Mininet's total over the testbed's.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

__all__ = ["time_testbed", "time_mininet", "main"]

LAB_NAME = "bench-scale"
TARGETS_S = {256: 3.0, 1023: 12.0, 1024: 12.0}


#: (hosts per site) -> target for a two-clouds lab (2 sites, direct), up + down in seconds
TWO_CLOUDS_TARGETS_S = {256: 6.0}


def time_testbed(hosts: int, topology: str = "star") -> Tuple[float, float]:
    """(up_s, down_s) of a ``star`` lab with ``hosts`` hosts, or a ``two-clouds`` lab with
    ``hosts`` per site."""
    from testbed.lab import teardown
    from testbed.lab.lab import Lab

    teardown.teardown(LAB_NAME)  # a leftover of an interrupted earlier run: ours by name
    start = time.monotonic()
    lab = None
    try:
        params = {"hosts": hosts} if topology == "star" else {"hosts_per_site": hosts}
        lab = Lab.create(topology, name=LAB_NAME, params=params)
        up = time.monotonic() - start
        start = time.monotonic()
        lab.destroy()
        down = time.monotonic() - start
        lab = None
    finally:
        if lab is not None:
            lab.destroy()
    return up, down


def _star(hosts: int):
    from mininet.topo import Topo

    from testbed.topologies.star import PORTS_PER_SWITCH

    class _Star(Topo):  # the same shape as topologies/star.py, its own names
        def build(self, n=2):
            leaves = [self.addSwitch(f"bs{k}") for k in range(1, (n + PORTS_PER_SWITCH - 1) // PORTS_PER_SWITCH + 1)]
            if len(leaves) > 1:
                spine = self.addSwitch("bs0")
                for leaf in leaves:
                    self.addLink(leaf, spine)
            for i in range(1, n + 1):
                self.addLink(self.addHost(f"bh{i}"), leaves[(i - 1) // PORTS_PER_SWITCH])

    return _Star(n=hosts)


def time_mininet(hosts: int) -> Tuple[float, float]:
    """(up_s, down_s) of Mininet's own build + start and stop of the same topology."""
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.nodelib import LinuxBridge

    setLogLevel("error")
    topo = _star(hosts)  # the description is not part of the timing
    net = None
    start = time.monotonic()
    try:
        net = Mininet(topo, switch=LinuxBridge, controller=None)
        net.start()
        up = time.monotonic() - start
        start = time.monotonic()
        stopping, net = net, None
        stopping.stop()
        down = time.monotonic() - start
    finally:
        if net is not None:
            net.stop()
    return up, down


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="256,1024", help="sizes, comma separated (1..4096)")
    ap.add_argument("--per-site", default="256,512",
                    help="two-clouds hosts per site, comma separated (1..999; '' to skip)")
    ap.add_argument("--skip-mininet-above", type=int, default=1024,
                    help="run Mininet only for sizes up to this (default 1024)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("needs root (network namespaces)\n")
        return 3
    sizes = [int(s) for s in args.hosts.split(",")]
    load_before = os.getloadavg()
    rows = []
    for n in sizes:
        tb = time_testbed(n)
        mn = time_mininet(n) if n <= args.skip_mininet_above else None
        rows.append((n, tb, mn))
    per_site = [int(s) for s in args.per_site.split(",") if s.strip()]
    sites_rows = [(n, time_testbed(n, "two-clouds")) for n in per_site]
    load_after = os.getloadavg()

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    print(f"machine: {os.cpu_count()} CPUs, kernel {platform.release()}, {now}; "
          f"load {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)")
    print(f"{'hosts':>5}  {'emulator':18} {'up s':>7} {'down s':>7} {'total s':>8} "
          f"{'target s':>8} {'Mininet/testbed':>15}")
    for n, (tb_up, tb_down), mn in rows:
        target = TARGETS_S.get(n)
        tgt = f"{target:8.1f}" if target else f"{'-':>8}"
        total = tb_up + tb_down
        verdict = "" if target is None else ("  ok" if total <= target else "  over target")
        ratio = f"{sum(mn) / total:15.2f}" if mn else f"{'-':>15}"
        print(f"{n:5d}  {'testbed star':18} {tb_up:7.2f} {tb_down:7.2f} {total:8.2f} {tgt} "
              f"{ratio}{verdict}")
        if mn:
            print(f"{n:5d}  {'Mininet LinuxBridge':18} {mn[0]:7.2f} {mn[1]:7.2f} {sum(mn):8.2f} "
                  f"{'-':>8} {'':>15}")
        else:
            print(f"{n:5d}  {'Mininet LinuxBridge':18} skipped (--skip-mininet-above "
                  f"{args.skip_mininet_above})")
    for n, (up, down) in sites_rows:
        target = TWO_CLOUDS_TARGETS_S.get(n)
        tgt = f"{target:8.1f}" if target else f"{'-':>8}"
        verdict = "" if target is None else ("  ok" if up + down <= target else "  over target")
        print(f"{2 * n:5d}  {f'two-clouds 2x{n}':18} {up:7.2f} {down:7.2f} {up + down:8.2f} {tgt} "
              f"{'-':>15}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
