"""The window advisory: where the hosts' socket buffers cannot fill a path, say so.

One TCP connection carries at most its window per round trip. A host's
window is bounded by its socket-buffer limits (``net.ipv4.tcp_rmem`` /
``tcp_wmem`` maxima; half of that holds data, :mod:`testbed.tcpmodel`), so a
10 Gbit/s path of 80 ms needs 100 MB in flight while Linux's defaults for a
new namespace allow about 3 MB: about 300 Mbit/s per connection, with nothing
in the link to blame. :func:`advisories` compares each path between two sites
(its first hosts) with the window the hosts' sysctls give, and returns one line
per path that cannot be filled; ``testbed up`` prints them and ``testbed run``
attaches them to the TCP figure.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Tuple

from testbed import tcpmodel
from testbed.lab.paths import l3_path, path_profile

__all__ = ["window_advisory", "advisories"]


def window_advisory(src: str, dst: str, pred: dict, host: tcpmodel.HostTcp,
                    connections: int = 1) -> Optional[str]:
    """One line when ``connections`` connections' windows cannot fill the path ``pred``, else None."""
    rate_bps, rtt_ms = pred.get("bottleneck_bps"), pred.get("rtt_ms") or 0.0
    if not rate_bps or rtt_ms <= 0:
        return None
    bdp_bytes = rate_bps / 8 * rtt_ms / 1000.0
    window = host.window_bytes()
    carried_bps = min(rate_bps, connections * tcpmodel.window_bound_bps(window, rtt_ms / 1000.0))
    if connections * window >= bdp_bytes:
        return None
    need = 2 * bdp_bytes / connections  # both buffers' maxima, of which half holds data
    return (f"{src} -> {dst}: {rate_bps / 1e6:g} Mbit/s x {rtt_ms:g} ms RTT needs {bdp_bytes / 2**20:.1f} MiB "
            f"in flight, but the hosts' socket buffers allow {window / 2**20:.1f} MiB per connection "
            f"(tcp_rmem max {host.rmem_max_bytes}, tcp_wmem max {host.wmem_max_bytes}): "
            f"{connections} TCP connection(s) top out near {carried_bps / 1e6:.0f} Mbit/s. Raise "
            f"net.ipv4.tcp_rmem/tcp_wmem max to at least {int(need)} (scenario host_sysctls, "
            f"or 'testbed up ... --set host.net.ipv4.tcp_rmem=...')")


def _site_pairs(plan) -> List[Tuple[str, str]]:
    first: Dict[Optional[str], str] = {}
    for node in sorted(plan.hosts(), key=lambda n: n.name):
        first.setdefault(node.site, node.name)
    hosts = list(first.values())
    return [(a, b) for i, a in enumerate(hosts) for b in hosts[i + 1:]]


def advisories(plan, sysctls_of: Callable[[str], Mapping[str, object]]) -> List[str]:
    """Advisories for every pair of sites of ``plan``; ``sysctls_of(host)`` gives a host's sysctls
    (asked only for the first host of each site, not for every host of a big lab)."""
    out = []
    for a, b in _site_pairs(plan):
        host = tcpmodel.HostTcp.from_sysctls(sysctls_of(a) or {})
        line = window_advisory(a, b, path_profile(plan, l3_path(plan, a, b)), host)
        if line:
            out.append(line)
    return out
