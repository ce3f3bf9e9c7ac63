"""Fidelity: each measured figure beside what the configuration predicts.

Predictions come from the links on the measured path (see
:func:`testbed.lab.paths.path_profile`): RTT is the sum of the hop delays both ways; throughput is
bounded by the bottleneck rate after header overhead, by the window over the
RTT, and under loss by Mathis et al. (rate ~ MSS/RTT x 1.22/sqrt(p)); one-way
jitter (standard deviation) adds in quadrature over the hops.

Verdicts: ``pass`` within tolerance; ``warn`` when the measurement fell short
for a reason the emulator cannot rule out (TCP below its bound, the delay line
running late because the machine is saturated); ``fail`` when the emulation
was plainly wrong (idle RTT off the configured delay, throughput above what
the links allow). A ``fail`` makes ``testbed run`` exit 1.
"""

from __future__ import annotations

import math
from typing import List, Optional

__all__ = ["checks", "throughput_bound_mbps", "mathis_mbps", "TCP_IP_HEADER_BYTES", "ETHERNET_HEADER_BYTES"]

TCP_IP_HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps 12
ETHERNET_HEADER_BYTES = 14  # what htb counts beyond the IP packet
RTT_FLOOR_MS = 0.5  # absolute slack: veth hops and the line's own processing, ~0.1-0.4 ms here
JITTER_FLOOR_MS = 0.5  # the probes' own timing noise (Python sender and receiver)
LATE_WARN_MS = 1.0  # delay line p99 lateness beyond which results are suspect
MATHIS_C = 1.22
CPU_BUSY_WARN_PCT = 90.0  # all cores together


def _check(metric, configured, measured, tolerance, verdict, note=""):
    out = {"metric": metric, "configured": configured, "measured": measured,
           "tolerance": tolerance, "verdict": verdict}
    if note:
        out["detail"] = note
    return out


def throughput_bound_mbps(pred: dict, rtt_ms: float, window_bytes: Optional[int]) -> Optional[float]:
    """Hard bound: bottleneck goodput after headers, and window / RTT."""
    mtu = pred["path_mtu"]
    mss = mtu - TCP_IP_HEADER_BYTES
    bounds = []
    if pred["bottleneck_bps"]:
        bounds.append(pred["bottleneck_bps"] * mss / (mtu + ETHERNET_HEADER_BYTES) / 1e6)
    if window_bytes and rtt_ms > 0:
        bounds.append(window_bytes * 8 / (rtt_ms / 1000.0) / 1e6)
    return min(bounds) if bounds else None


def mathis_mbps(pred: dict, rtt_ms: float) -> Optional[float]:
    """Mathis et al. estimate under loss: an estimate (Reno-like), not a bound."""
    if pred["loss_pct"] <= 0 or rtt_ms <= 0:
        return None
    mss = pred["path_mtu"] - TCP_IP_HEADER_BYTES
    p = pred["loss_pct"] / 100.0
    return mss * 8 / (rtt_ms / 1000.0) * MATHIS_C / math.sqrt(p) / 1e6


def checks(pred: dict, variant: dict, tolerances: dict, window_bytes: Optional[int] = None) -> List[dict]:
    out: List[dict] = []
    ping = variant.get("ping")
    if ping and ping.get("rtt_ms", {}).get("mean") is not None:
        measured = ping["rtt_ms"]["mean"]
        tol = max(RTT_FLOOR_MS, pred["rtt_ms"] * tolerances["rtt_tolerance_pct"] / 100.0)
        ok = abs(measured - pred["rtt_ms"]) <= tol
        out.append(_check("rtt_ms", round(pred["rtt_ms"], 3), round(measured, 3), round(tol, 3),
                          "pass" if ok else "fail"))
    owd = variant.get("owd")
    fwd = (owd or {}).get("forward") or {}
    if fwd.get("stdev_ms") is not None and pred["jitter_forward_ms"] > 0:
        measured = fwd["stdev_ms"]
        tol = max(JITTER_FLOOR_MS, pred["jitter_forward_ms"] * tolerances["jitter_tolerance_pct"] / 100.0)
        ok = abs(measured - pred["jitter_forward_ms"]) <= tol
        out.append(_check("owd_stdev_ms", round(pred["jitter_forward_ms"], 3), round(measured, 3),
                          round(tol, 3), "pass" if ok else "warn",
                          "" if ok else "FIFO order (no reordering) trims jitter when probes are close"))
    tcp = variant.get("tcp")
    if tcp and tcp.get("throughput_mbps") is not None:
        rtt = (ping or {}).get("rtt_ms", {}).get("mean") or pred["rtt_ms"]
        bound = throughput_bound_mbps(pred, rtt, window_bytes)
        if bound:
            measured = tcp["throughput_mbps"]
            tol = bound * tolerances["throughput_tolerance_pct"] / 100.0
            if measured > bound + tol:
                verdict, note = "fail", "more throughput than the links allow"
            elif measured >= bound - tol:
                verdict, note = "pass", ""
            else:
                verdict, note = "warn", "below the bound (TCP dynamics, or the emulator was the limit)"
            out.append(_check("tcp_throughput_mbps", round(bound, 2), round(measured, 2),
                              round(tol, 2), verdict, note))
        estimate = mathis_mbps(pred, rtt)
        if estimate:
            out.append(_check("tcp_mathis_estimate_mbps", round(estimate, 2),
                              round(tcp["throughput_mbps"], 2), None, "skip",
                              "Mathis estimate under the configured loss; informational"))
    path = variant.get("path")
    if path and path.get("path_mtu"):
        ok = path["path_mtu"] == pred["path_mtu"]
        out.append(_check("path_mtu", pred["path_mtu"], path["path_mtu"], 0, "pass" if ok else "fail"))
    busy = (variant.get("emulator") or {}).get("cpu_busy_pct")
    if busy is not None:
        ok = busy <= CPU_BUSY_WARN_PCT
        out.append(_check("cpu_busy_pct_during_tcp", CPU_BUSY_WARN_PCT, busy, None,
                          "pass" if ok else "warn",
                          "" if ok else "the machine was saturated: throughput may be the emulator's limit"))
    for line in (variant.get("emulator") or {}).get("delay_lines", []):
        late = line.get("late_p99_ms")
        if late is None:
            continue
        ok = late <= LATE_WARN_MS
        wire = line.get("node") or line.get("netns") or "?"  # the link's wire namespace, e.g. _w5
        out.append(_check(f"delay_line_late_p99_ms[{line['link']} {wire}:{line['direction']}]", 0.0,
                          round(late, 3), LATE_WARN_MS, "pass" if ok else "warn",
                          "" if ok else "the delay line fell behind: the machine could not keep up"))
    return out
