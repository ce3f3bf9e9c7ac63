"""What the TCP connections on a path can carry: one bound for the model and the fidelity check.

A path's links set a rate; the TCP connections on it may not reach it. For
``connections`` connections between two hosts (a collective's ``nsocks``,
iperf3's streams) the bound is the smallest of:

* the **link**: the bottleneck rate (bits on the wire; header overhead is the
  caller's business: the fidelity check counts goodput, the collective model
  counts the bytes it sends over the wire rate, as its alpha-beta terms do);
* the **window**: ``connections x window_bytes / RTT``, where a connection's
  window is the smallest of the receiver's buffer (``tcp_rmem`` max), the
  sender's (``tcp_wmem`` max), each times :data:`BUFFER_DATA_SHARE` (the
  kernel keeps part of a socket buffer for its bookkeeping:
  ``tcp_adv_win_scale`` = 1, the default, gives half), and any in-flight
  limit of the application (a collective's ``buffsize``);
* the **loss** bound, for loss-based congestion control (reno, cubic, ...):
  ``connections x`` Mathis et al. 1997, ``MSS / RTT x 1.22 / sqrt(p)``, below
  :data:`PADHYE_ABOVE_LOSS`, and Padhye et al. 1998 (with retransmission
  timeouts, ``MSS / (RTT sqrt(2p/3) + T0 min(1, 3 sqrt(3p/8)) p (1 + 32 p^2))``,
  ``T0 = RTT + 200 ms``, Linux's minimum RTO) at and above it; ``p`` is the
  data direction's loss. BBR does not cut its rate on random loss (it models
  the path's bandwidth, not its losses), so it gets no loss bound: what the
  testbed measures for BBR over a lossy path is judged against the link and
  window only, and a row far above its model says so.

:func:`tcp_bound` returns the figure and which term set it (``limit``:
``link``, ``window`` or ``loss``), so a report can say why. Slow start
(:func:`slow_start_us`): a connection that starts, or restarts after an idle
longer than its RTO with ``tcp_slow_start_after_idle`` = 1, opens from
``IW`` = 10 segments and doubles its window every RTT (Cardwell, Savage &
Anderson 2000); :func:`slow_start_us` is the time it then takes beyond
``bytes / rate``. Loss recovery (:func:`loss_recovery_us`): a message completes
when its last byte arrives, so a lost segment delays it by the time TCP takes
to notice and resend (:data:`RECOVERY_RTTS` round trips), whatever the
congestion control; the rate bounds above do not hold that latency.
Recovery stalls (:func:`recovery_stall_factor`): while a lost segment's hole
is open the window's left edge stands still, so a connection that fills its
window in less than ``(1 + RECOVERY_RTTS) x RTT`` stops sending until the
retransmission is acknowledged; a window-limited connection loses
``RECOVERY_RTTS`` round trips for every round trip that loses a segment. For
a congestion control without a loss bound (BBR) this is what random loss
costs a stream of messages; a loss-based one's loss bound already holds it.

:class:`HostTcp` holds what the hosts' sysctls say (``from_sysctls``: a
namespace's values or a scenario's ``host_sysctls`` over the kernel's
defaults for a new namespace).

Scale: every bound here is in bytes per second of real packets, and
``scale: K`` (:mod:`testbed.scale`) sends K times fewer bytes over links K
times slower -- but a window, an MSS and a loss probability are not scaled, so
on a scaled lab the window and loss bounds stand for K times more than they
would on real links. Where one of them is the limit, scaling changes the
physics (:mod:`testbed.autoscale` does not scale such a path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

from testbed.errors import InputError

__all__ = [
    "TCP_IP_HEADER_BYTES",
    "MATHIS_C",
    "PADHYE_ABOVE_LOSS",
    "MIN_RTO_S",
    "INITIAL_WINDOW_SEGMENTS",
    "BUFFER_DATA_SHARE",
    "LOSS_BASED",
    "HostTcp",
    "TcpBound",
    "mss_bytes",
    "mathis_bps",
    "padhye_bps",
    "loss_bound_bps",
    "window_bound_bps",
    "tcp_bound",
    "slow_start_us",
    "RECOVERY_RTTS",
    "loss_recovery_us",
    "recovery_stall_factor",
]

TCP_IP_HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps 12
MATHIS_C = 1.22  # sqrt(3/2): an ACK per segment (Mathis et al. 1997)
#: at and above this loss probability the timeouts Padhye et al. count matter (>10 % slower)
PADHYE_ABOVE_LOSS = 0.01
MIN_RTO_S = 0.2  # Linux's TCP_RTO_MIN
INITIAL_WINDOW_SEGMENTS = 10  # RFC 6928, Linux's default
#: share of a socket buffer that holds data (tcp_adv_win_scale = 1: half)
BUFFER_DATA_SHARE = 0.5
#: round trips a lost segment adds to the message it belongs to: RACK (RFC 8985) marks it
#: lost a reordering window (min RTT / 4) after a later segment's SACK is back, one RTT after
#: the segment was sent, and its retransmission crosses the path as the original would have
RECOVERY_RTTS = 1.25
#: congestion controls whose rate falls with random loss (Mathis/Padhye apply)
LOSS_BASED = ("reno", "cubic", "htcp", "bic", "highspeed", "scalable", "westwood", "illinois",
              "vegas", "veno", "yeah", "hybla", "nv", "lp", "dctcp", "cdg")

#: a new network namespace's values on Linux 6.x (per-namespace since 4.15)
_DEFAULT_RMEM_MAX = 6291456
_DEFAULT_WMEM_MAX = 4194304


def _max_of_triple(text: object, field: str) -> int:
    try:
        parts = [int(x) for x in str(text).split()]
    except ValueError as exc:
        raise InputError(field, f"must be three integers 'min default max', got {text!r}") from exc
    if len(parts) != 3 or parts[2] <= 0:
        raise InputError(field, f"must be three integers 'min default max', got {text!r}")
    return parts[2]


@dataclass(frozen=True)
class HostTcp:
    """The TCP settings of the hosts at both ends that bound a connection."""

    rmem_max_bytes: int = _DEFAULT_RMEM_MAX
    wmem_max_bytes: int = _DEFAULT_WMEM_MAX
    slow_start_after_idle: bool = True
    congestion: str = "cubic"

    @classmethod
    def from_sysctls(cls, sysctls: Mapping[str, object], congestion: Optional[str] = None,
                     base: Optional["HostTcp"] = None) -> "HostTcp":
        """``base`` (the defaults) with ``net.ipv4.tcp_rmem``/``tcp_wmem``/
        ``tcp_slow_start_after_idle``/``tcp_congestion_control`` from ``sysctls``;
        ``congestion`` (a socket's own choice) wins over the sysctl."""
        base = base or cls()
        rmem = sysctls.get("net.ipv4.tcp_rmem")
        wmem = sysctls.get("net.ipv4.tcp_wmem")
        idle = sysctls.get("net.ipv4.tcp_slow_start_after_idle")
        cc = congestion or sysctls.get("net.ipv4.tcp_congestion_control") or base.congestion
        return cls(
            rmem_max_bytes=_max_of_triple(rmem, "net.ipv4.tcp_rmem") if rmem else base.rmem_max_bytes,
            wmem_max_bytes=_max_of_triple(wmem, "net.ipv4.tcp_wmem") if wmem else base.wmem_max_bytes,
            slow_start_after_idle=(str(idle).strip() != "0") if idle is not None
            else base.slow_start_after_idle,
            congestion=str(cc).strip(),
        )

    def window_bytes(self, app_window_bytes: Optional[int] = None) -> int:
        """One connection's largest window: the buffers' data share, and the application's limit."""
        window = BUFFER_DATA_SHARE * min(self.rmem_max_bytes, self.wmem_max_bytes)
        if app_window_bytes:
            window = min(window, app_window_bytes)
        return int(window)

    @property
    def loss_based(self) -> bool:
        return self.congestion in LOSS_BASED


@dataclass(frozen=True)
class TcpBound:
    """What ``connections`` TCP connections carry (bits/s) and which term set it."""

    rate_bps: float
    limit: str  # "link" | "window" | "loss"
    link_bps: Optional[float]
    window_bps: Optional[float]
    loss_bps: Optional[float]
    connections: int

    def to_dict(self) -> dict:
        return {"rate_bps": round(self.rate_bps), "limit": self.limit,
                "link_bps": None if self.link_bps is None else round(self.link_bps),
                "window_bps": None if self.window_bps is None else round(self.window_bps),
                "loss_bps": None if self.loss_bps is None else round(self.loss_bps),
                "connections": self.connections}


def mss_bytes(mtu: int) -> int:
    """TCP payload of a full IPv4 packet with timestamps."""
    if mtu <= TCP_IP_HEADER_BYTES:
        raise InputError("mtu", f"must be above {TCP_IP_HEADER_BYTES} bytes, got {mtu}")
    return mtu - TCP_IP_HEADER_BYTES


def _check_rtt_loss(rtt_s: float, loss: float) -> None:
    if not rtt_s > 0:
        raise InputError("rtt", f"must be > 0 s, got {rtt_s!r}")
    if not 0 < loss < 1:
        raise InputError("loss", f"must be a probability in (0, 1), got {loss!r}")


def mathis_bps(mss: int, rtt_s: float, loss: float) -> float:
    """Mathis et al.: ``MSS x 8 / RTT x 1.22 / sqrt(p)`` bits/s for one Reno-like connection."""
    _check_rtt_loss(rtt_s, loss)
    return mss * 8 / rtt_s * MATHIS_C / math.sqrt(loss)


def padhye_bps(mss: int, rtt_s: float, loss: float, rto_s: Optional[float] = None) -> float:
    """Padhye et al. (one ACK per segment, ``b`` = 1), without the window cap (bits/s)."""
    _check_rtt_loss(rtt_s, loss)
    t0 = rto_s if rto_s is not None else rtt_s + MIN_RTO_S
    p = loss
    denom = (rtt_s * math.sqrt(2 * p / 3)
             + t0 * min(1.0, 3 * math.sqrt(3 * p / 8)) * p * (1 + 32 * p * p))
    return mss * 8 / denom


def loss_bound_bps(mss: int, rtt_s: float, loss: float) -> float:
    """One connection under random loss ``loss``: Mathis below PADHYE_ABOVE_LOSS, else Padhye."""
    if loss < PADHYE_ABOVE_LOSS:
        return mathis_bps(mss, rtt_s, loss)
    return padhye_bps(mss, rtt_s, loss)


def window_bound_bps(window_bytes: float, rtt_s: float) -> float:
    """One connection with at most ``window_bytes`` in flight: ``window / RTT``."""
    if not rtt_s > 0 or not window_bytes > 0:
        raise InputError("window", f"need window > 0 bytes and RTT > 0 s, got {window_bytes!r}, {rtt_s!r}")
    return window_bytes * 8 / rtt_s


def tcp_bound(link_bps: Optional[float], rtt_ms: float, loss_pct: float, mtu: int,
              host: HostTcp = HostTcp(), connections: int = 1,
              app_window_bytes: Optional[int] = None) -> TcpBound:
    """What ``connections`` connections on a path carry (module docstring).

    ``link_bps`` None means an unshaped path (no link term); ``rtt_ms`` 0 (no
    delay configured) gives no window or loss term. Raises InputError when
    nothing bounds the path (unshaped and no RTT).
    """
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise InputError("connections", f"must be an integer >= 1, got {connections!r}")
    if loss_pct < 0 or loss_pct >= 100:
        raise InputError("loss", f"must be in [0, 100) %, got {loss_pct!r}")
    rtt_s = rtt_ms / 1000.0
    window = loss = None
    if rtt_s > 0:
        window = connections * window_bound_bps(host.window_bytes(app_window_bytes), rtt_s)
        if loss_pct > 0 and host.loss_based:
            loss = connections * loss_bound_bps(mss_bytes(mtu), rtt_s, loss_pct / 100.0)
    terms = [(v, name) for v, name in ((link_bps, "link"), (window, "window"), (loss, "loss"))
             if v is not None and v > 0]
    if not terms:
        raise InputError("path", "an unshaped path without delay has no TCP bound")
    rate, limit = min(terms)
    return TcpBound(rate, limit, link_bps or None, window, loss, connections)


def slow_start_us(nbytes: float, rate_bps: float, rtt_ms: float, mss: int,
                  iw_segments: int = INITIAL_WINDOW_SEGMENTS) -> float:
    """Extra time (us) to send ``nbytes`` from an initial window, beyond ``nbytes / rate``.

    The window starts at ``iw_segments`` MSS and doubles every RTT until it
    holds the bandwidth-delay product ``rate x RTT`` or the next window would
    hold the rest; the ``r`` round trips until then carried ``s`` bytes, which
    costs ``r x RTT - s / rate`` more than the rate alone. 0 without delay.
    """
    if rtt_ms <= 0 or nbytes <= 0:
        return 0.0
    if rate_bps <= 0:
        raise InputError("rate", f"must be > 0 bit/s, got {rate_bps!r}")
    rtt_us = rtt_ms * 1000.0
    bdp = rate_bps / 8 * rtt_ms / 1000.0
    window = float(iw_segments * mss)
    sent = 0.0
    rounds = 0
    while window < bdp and sent + window < nbytes:
        sent += window
        window *= 2
        rounds += 1
    # ``rounds`` round trips carried ``sent`` bytes; the rest flows at the rate
    return max(0.0, rounds * rtt_us - sent * 8 / rate_bps * 1e6)


def loss_recovery_us(nbytes: float, rtt_ms: float, loss_pct: float, mss: int,
                     window_bytes: float) -> float:
    """Expected extra time (us) a message of ``nbytes`` spends recovering random losses.

    The message goes out in ``r = ceil(nbytes / window_bytes)`` windows (round
    trips) of ``s`` segments each; a window with at least one loss
    (probability ``1 - (1 - p)^s``) completes :data:`RECOVERY_RTTS` round trips
    late, losses in one window being recovered together (SACK). So
    ``r (1 - (1 - p)^s) x RECOVERY_RTTS x RTT``. 0 without loss or delay.
    A first-order estimate: a lost retransmission (a timeout) is not counted.
    Measured against it in docs/collectives.md ("Loss recovery over a lossy
    WAN").
    """
    if nbytes <= 0 or rtt_ms <= 0 or loss_pct <= 0:
        return 0.0
    if loss_pct >= 100:
        raise InputError("loss", f"must be in [0, 100) %, got {loss_pct!r}")
    if mss <= 0 or not window_bytes > 0:
        raise InputError("window", f"need mss > 0 and window > 0 bytes, got {mss!r}, {window_bytes!r}")
    rounds = max(1, math.ceil(nbytes / window_bytes))
    segments = math.ceil(nbytes / mss) / rounds
    p_round = 1.0 - (1.0 - loss_pct / 100.0) ** segments
    return rounds * p_round * RECOVERY_RTTS * rtt_ms * 1000.0


def recovery_stall_factor(rate_bps: float, window_bps: float, connections: int, rtt_ms: float,
                          loss_pct: float, mss: int) -> float:
    """How much longer a stream takes over a lossy path through recovery stalls (>= 1).

    ``connections`` connections share ``rate_bps`` (the rate without loss: the
    link's or the window's), each with at most ``window_bps / connections x
    RTT`` in flight. A connection's round trip carries ``s = rate x RTT / MSS``
    segments and loses one with probability ``P = 1 - (1 - p)^s``; the hole
    then holds the left edge ``(1 + RECOVERY_RTTS) x RTT`` after the lost
    segment left, and the connection stalls for what its window cannot cover
    of that: ``stall = max(0, (1 + RECOVERY_RTTS) RTT - window / rate)``. So
    the time per round trip becomes ``RTT + P x stall``: the factor is
    ``1 + P x stall / RTT``; a window-limited connection (window / rate =
    RTT) gets ``1 + RECOVERY_RTTS x P``, one whose window covers the
    recovery gets 1. First order, as :func:`loss_recovery_us`: timeouts are
    not counted.
    """
    if rtt_ms <= 0 or loss_pct <= 0:
        return 1.0
    if loss_pct >= 100:
        raise InputError("loss", f"must be in [0, 100) %, got {loss_pct!r}")
    if not rate_bps > 0 or not window_bps > 0 or connections < 1 or mss <= 0:
        raise InputError("rate", f"need rate, window > 0 bit/s, connections >= 1 and mss > 0, got "
                                 f"{rate_bps!r}, {window_bps!r}, {connections!r}, {mss!r}")
    rtt_s = rtt_ms / 1000.0
    rate_conn = min(rate_bps, window_bps) / connections  # bits/s: the window caps the rate too
    window_conn_bits = window_bps / connections * rtt_s
    segments = rate_conn * rtt_s / 8 / mss
    p_round = 1.0 - (1.0 - loss_pct / 100.0) ** segments
    stall_s = max(0.0, (1.0 + RECOVERY_RTTS) * rtt_s - window_conn_bits / rate_conn)
    return 1.0 + p_round * stall_s / rtt_s
