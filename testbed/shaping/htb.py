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

from typing import Callable, Optional, Tuple

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import plugins, sched_pfifo

from testbed.errors import KernelError
from testbed.lab.nssocket import ifindex

__all__ = ["apply_egress", "class_options", "netem_leaf_place", "htb_burst_bytes", "host_gso_max_bytes",
           "leaf_limit", "ROOT", "CLASS", "LEAF"]

# bfifo's options are pfifo's (struct tc_fifo_qopt { __u32 limit; }); pyroute2
# only registers "pfifo", so register the byte-counting twin under its name.
plugins.setdefault("bfifo", sched_pfifo)

ROOT = 0x10000  # 1:
CLASS = 0x10001  # 1:1
LEAF = 0x100000  # 10:
HTB_QUANTUM_BYTES = 200_000  # largest quantum tc accepts without warning
GSO_MAX_BYTES = 65_536
SHAPER_SLACK_S = 100e-6  # how far htb may run ahead of the line: about its timer slack
ETH_HLEN = 14  # htb counts the frame: MTU plus the Ethernet header


def htb_burst_bytes(rate_bps: int, mtu: int) -> int:
    """100 us of line rate, and never less than one full frame.

    The bucket is what an idle link may send back to back at veth speed,
    which a real link of that rate never does. A 1 ms bucket (and, below
    600 Mbit/s, a 64 KiB floor for GSO packets) let a latency-bound
    allreduce skip the serialization of most of its messages: after each
    wait for the WAN the next message found the bucket full and left at once.
    htb needs no floor: a class sends while its tokens are >= 0 and goes into
    debt for the rest of a large packet, so the average rate holds
    (tests/integration/test_shaping_accuracy.py). What is left is that debt:
    a whole GSO packet leaves at once, which :func:`host_gso_max_bytes` keeps
    to the same 100 us on slow links.
    """
    return int(max(rate_bps / 8 * SHAPER_SLACK_S, mtu + ETH_HLEN))


def host_gso_max_bytes(slowest_rate_bps: Optional[int], mtu: int) -> Optional[int]:
    """The GSO packet size hosts may build so that none outlasts the shaper's slack.

    htb releases a packet as soon as its tokens are >= 0, so a 64 KiB GSO
    packet crosses a 200 Mbit/s link (a ``scale`` 50 lab's 10 Gbit/s
    interconnect) 2.6 ms ahead of its line time. On a lab whose slowest
    shaped rate makes 64 KiB longer than :data:`SHAPER_SLACK_S`, hosts build
    packets of at most that much (at least one MTU); None: leave GSO alone.
    """
    if not slowest_rate_bps:
        return None
    size = int(slowest_rate_bps / 8 * SHAPER_SLACK_S)
    return None if size >= GSO_MAX_BYTES else max(mtu, size)


def leaf_limit(profile, rtt_ms: float, mtu: int):
    """("bytes", n) or ("packets", n) for the leaf FIFO of this profile.

    Byte limits never fall below two GSO super-packets: a smaller bfifo drops
    every 64 KB segment TCP hands to a veth, whatever the rate.
    """
    kind, value = profile.queue.limit(profile.rate_bps, rtt_ms, mtu)
    if kind == "bytes":
        value = max(int(value), 2 * GSO_MAX_BYTES + mtu)
    return kind, int(value)


def class_options(rate_bps: int, mtu: int) -> dict:
    """The htb class 1:1 settings for ``rate_bps`` (add-class, and change-class at runtime)."""
    burst = htb_burst_bytes(rate_bps, mtu)
    return dict(handle=CLASS, parent=ROOT, rate=f"{rate_bps}bit", ceil=f"{rate_bps}bit",
                burst=burst, cburst=burst, quantum=HTB_QUANTUM_BYTES)


def netem_leaf_place(profile, rtt_ms: float, mtu: int) -> Tuple[Optional[int], int, int]:
    """(parent, handle, limit in packets) of a direction's netem qdisc: the leaf under the
    htb class when the direction has a rate, else the root qdisc."""
    kind, limit = leaf_limit(profile, rtt_ms, mtu)
    limit_pkts = limit if kind == "packets" else max(1, limit // max(mtu, 1))
    return (CLASS, LEAF, limit_pkts) if profile.rate_bps else (None, ROOT, limit_pkts)


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
    index = ifindex(ns, ifname, "the namespace being shaped")
    try:
        if profile.rate_bps:
            ns.tc("add", "htb", index=index, handle=ROOT, default=1)
            ns.tc("add-class", "htb", index=index, **class_options(profile.rate_bps, mtu))
        if netem_leaf is not None:
            netem_leaf(ns, index, *netem_leaf_place(profile, rtt_ms, mtu))
        elif profile.rate_bps:
            kind, limit = leaf_limit(profile, rtt_ms, mtu)
            fifo = "bfifo" if kind == "bytes" else "pfifo"
            ns.tc("add", fifo, index=index, handle=LEAF, parent=CLASS, limit=limit)
    except NetlinkError as exc:
        raise KernelError(
            f"shaping {ifname} (rate {profile.rate_bps} bit/s): {exc}", exc.code
        ) from exc
