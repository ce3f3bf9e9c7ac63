"""The TCP bound on a collective's edges: what its connections between two hosts can carry.

The alpha-beta model's ``b`` of a path is 1 / its bottleneck rate. A
collective's bytes cross that path on ``nsocks`` TCP connections per pair of
hosts, each with at most ``buffsize`` bytes in flight, and TCP may not fill
the link: :func:`testbed.tcpmodel.tcp_bound` (window / RTT from the hosts'
socket buffers and ``buffsize``, and the loss bound for loss-based congestion
control) gives what they carry, and the edge's ``b`` becomes the larger of the
link's and 8 / that bound (:func:`path_tcp`). A WAN link shared by ``c`` ring
edges gives each ``c`` times the link's ``b``, but each edge its own
connections: ``max(c b_link, b_tcp)``.

:func:`host_tcp` reads the sysctls of a lab host (inside its namespace) and
the congestion control its sockets use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from testbed import tcpmodel
from testbed.errors import InputError
from testbed.lab.paths import l3_path, path_profile

__all__ = ["SYSCTL_KEYS", "PathTcp", "read_sysctls", "read_node_sysctls", "host_tcp", "path_tcp"]

SYSCTL_KEYS = ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_slow_start_after_idle",
               "net.ipv4.tcp_congestion_control")


def read_sysctls(netns: str) -> dict:
    """The values of :data:`SYSCTL_KEYS` inside namespace ``netns`` (missing ones left out)."""
    from testbed.lab.nssocket import in_netns

    out = {}
    with in_netns(netns):
        for key in SYSCTL_KEYS:
            try:
                with open("/proc/sys/" + key.replace(".", "/")) as fh:
                    out[key] = fh.read().strip()
            except OSError:
                continue
    return out


def read_node_sysctls(node) -> dict:
    """:func:`read_sysctls` through the node's own commands (a node on another machine)."""
    proc = node.run(["sysctl", "-n", *SYSCTL_KEYS], timeout_s=15.0, check=False)
    values = (proc.stdout or "").splitlines()
    return {key: " ".join(value.split()) for key, value in zip(SYSCTL_KEYS, values)} \
        if len(values) == len(SYSCTL_KEYS) else {}


def host_tcp(node, congestion: Optional[str] = None) -> tcpmodel.HostTcp:
    """What a lab host's sysctls (and the sockets' ``congestion`` if chosen) say."""
    return tcpmodel.HostTcp.from_sysctls(read_sysctls(node.netns), congestion=congestion)


@dataclass(frozen=True)
class PathTcp:
    """A path's TCP bound for the model: its ``beta_us_per_byte`` floor and why."""

    bound: tcpmodel.TcpBound
    rtt_ms: float
    loss_pct: float
    congestion: str
    mtu: int

    @property
    def beta_us_per_byte(self) -> float:
        return 8e6 / self.bound.rate_bps

    def to_dict(self) -> dict:
        return {**self.bound.to_dict(), "rtt_ms": round(self.rtt_ms, 3),
                "loss_pct": round(self.loss_pct, 4), "congestion": self.congestion}


def path_tcp(plan, a: str, b: str, host: tcpmodel.HostTcp, connections: int,
             app_window_bytes: Optional[int]) -> Optional[PathTcp]:
    """The TCP bound (window, loss; not the link) of the path from host a to b, or None.

    None when neither bounds it (no delay on the path). The RTT is the
    configured one (both directions), the loss the data direction's.
    """
    pred = path_profile(plan, l3_path(plan, a, b))
    if pred["rtt_ms"] <= 0:
        return None
    try:
        bound = tcpmodel.tcp_bound(None, pred["rtt_ms"], pred["loss_pct"], pred["path_mtu"], host,
                                   connections, app_window_bytes)
    except InputError:
        return None
    return PathTcp(bound, pred["rtt_ms"], pred["loss_pct"], host.congestion, pred["path_mtu"])
