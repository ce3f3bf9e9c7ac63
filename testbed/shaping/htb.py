"""Rate and queue in the kernel: an htb root with one class and a FIFO leaf.

Per direction, on the EGRESS interface of the sending end::

    htb 1: (default 1) -> class 1:1 rate R ceil R -> leaf 10:

The leaf is a byte-limited FIFO sized by the profile's ``queue`` (packets,
bytes or a multiple of the BDP), or, with the netem backend and an impaired
profile, the netem qdisc itself (Mininet's TCLink arrangement). Any rate up to
and beyond 10 Gbit/s is accepted (htb takes 64-bit rates); nothing is ever
silently left unshaped -- every netlink error is raised as KernelError.
"""

from __future__ import annotations

from typing import Callable, Optional

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import plugins, sched_pfifo

from testbed.errors import KernelError

__all__ = ["apply_egress", "htb_burst_bytes", "leaf_limit", "ROOT", "CLASS", "LEAF"]

# bfifo's options are pfifo's (struct tc_fifo_qopt { __u32 limit; }); pyroute2
# only registers "pfifo", so register the byte-counting twin under its name.
plugins.setdefault("bfifo", sched_pfifo)

ROOT = 0x10000  # 1:
CLASS = 0x10001  # 1:1
LEAF = 0x100000  # 10:
HTB_QUANTUM_BYTES = 200_000  # largest quantum tc accepts without warning
GSO_MAX_BYTES = 65_536
BURST_TIME_S = 0.001  # htb may send 1 ms of line rate back to back
ETH_HLEN = 14  # htb counts the frame: MTU plus the Ethernet header


def htb_burst_bytes(rate_bps: int, mtu: int) -> int:
    """1 ms of line rate, and never less than one full frame.

    The bucket is how much an idle link may send back to back at veth speed,
    which a real link of that rate never does, so it is kept to 1 ms at every
    rate. It used to be floored at one GSO super-packet (64 KiB): below
    about 600 Mbit/s that let an idle link pass several milliseconds of
    traffic at once (3 ms at 200 Mbit/s, where a ``scale`` 50 lab runs its
    10 Gbit/s interconnect), which made 16 MiB allreduces finish faster than
    the link rate allows. htb does not need the floor: a class may send while
    its tokens are >= 0 and goes into debt for the rest of a large packet, so
    a 64 KiB GSO packet still passes and the average rate holds
    (tests/integration/test_shaping_accuracy.py).
    """
    return int(max(rate_bps / 8 * BURST_TIME_S, mtu + ETH_HLEN))


def leaf_limit(profile, rtt_ms: float, mtu: int):
    """("bytes", n) or ("packets", n) for the leaf FIFO of this profile.

    Byte limits never fall below two GSO super-packets: a smaller bfifo drops
    every 64 KB segment TCP hands to a veth, whatever the rate.
    """
    kind, value = profile.queue.limit(profile.rate_bps, rtt_ms, mtu)
    if kind == "bytes":
        value = max(int(value), 2 * GSO_MAX_BYTES + mtu)
    return kind, int(value)


def apply_egress(
    ns,
    ifname: str,
    profile,
    rtt_ms: float,
    mtu: int,
    netem_leaf: Optional[Callable[..., None]] = None,
) -> None:
    """Shape ``ifname`` (inside the namespace of netlink socket ``ns``).

    ``netem_leaf(ns, index, parent, handle, limit_pkts)`` installs the netem
    qdisc when the netem backend carries this profile's impairments.
    """
    try:
        index = ns.link_lookup(ifname=ifname)[0]
    except (IndexError, NetlinkError) as exc:
        raise KernelError(f"interface {ifname} not found for shaping") from exc
    kind, limit = leaf_limit(profile, rtt_ms, mtu)
    limit_pkts = limit if kind == "packets" else max(1, limit // max(mtu, 1))
    try:
        if profile.rate_bps:
            burst = htb_burst_bytes(profile.rate_bps, mtu)
            ns.tc("add", "htb", index=index, handle=ROOT, default=1)
            ns.tc(
                "add-class", "htb", index=index, handle=CLASS, parent=ROOT,
                rate=f"{profile.rate_bps}bit", ceil=f"{profile.rate_bps}bit",
                burst=burst, cburst=burst, quantum=HTB_QUANTUM_BYTES,
            )
            if netem_leaf is not None:
                netem_leaf(ns, index, CLASS, LEAF, limit_pkts)
            else:
                fifo = "bfifo" if kind == "bytes" else "pfifo"
                ns.tc("add", fifo, index=index, handle=LEAF, parent=CLASS, limit=limit)
        elif netem_leaf is not None:
            netem_leaf(ns, index, None, ROOT, limit_pkts)
    except NetlinkError as exc:
        raise KernelError(
            f"shaping {ifname} (rate {profile.rate_bps} bit/s): {exc}", exc.code
        ) from exc
