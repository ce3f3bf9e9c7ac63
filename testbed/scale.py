"""Bandwidth scaling: a lab that stands for links K times faster than this machine carries.

With ``scale: K`` every link's rate is divided by K when it is shaped, and every
byte count a measurement sends is divided by K too; times are measured as they
are, and results are reported at real scale (sizes and throughputs times K).
The configured profiles, the lab's plan, the model and the fidelity
predictions all stay at real scale.

What this preserves, and what it does not (docs/collectives.md, "Scaling"):

* preserved: per-message latency (delays, jitter, loss are not scaled), the
  bandwidth term of every transfer (bytes / rate: both divided by K), and so
  the time of a collective and its latency/bandwidth balance;
* not preserved: anything counted in packets. A BDP in bytes is K times
  smaller, so a TCP window or queue holds K times fewer packets, slow start
  reaches the window in fewer round trips, and a fixed-packet queue drains K
  times slower. Per-packet CPU costs (the machine's own limits) shrink by K,
  which is the point.

A queue given in bytes is divided by K (the same queueing delay); one given in
packets or as a multiple of the BDP is left as it is.
"""

from __future__ import annotations

import math
from typing import Any

from testbed.errors import InputError

__all__ = ["MAX_SCALE", "check_scale", "scaled_profile", "scaled_bytes", "real_rate", "iperf_at_real_scale"]

MAX_SCALE = 10_000.0


def check_scale(value: Any, field: str = "scale", source: str = None) -> float:
    """A number from 1 to MAX_SCALE (1 = no scaling)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field, f"must be a number from 1 to {MAX_SCALE:g}, not {value!r}", source=source)
    if not 1 <= value <= MAX_SCALE:
        raise InputError(field, f"must be from 1 to {MAX_SCALE:g}, not {value:g}", source=source)
    return float(value)


def scaled_profile(profile, scale: float):
    """The profile the kernel gets: rate (and a byte queue) divided by ``scale``."""
    if scale == 1 or not profile.rate_bps:
        return profile
    update = {"rate_bps": max(1, int(round(profile.rate_bps / scale)))}
    queue = profile.queue
    if queue.kind == "bytes":
        update["queue"] = queue.model_copy(update={"value": float(max(1, int(queue.value // scale)))})
    return profile.model_copy(update=update)


def scaled_bytes(size_bytes: int, scale: float, multiple: int = 1) -> int:
    """The bytes actually sent for a real-scale ``size_bytes``: a multiple of ``multiple``, at least one."""
    if scale == 1:
        return size_bytes
    units = max(1, int(round(size_bytes / scale / multiple)))
    return units * multiple


def real_rate(measured: float, scale: float) -> float:
    """A throughput measured on the scaled lab, reported at real scale."""
    return measured * scale


def iperf_at_real_scale(data: dict, scale: float) -> dict:
    """An iperf3 result (tcp or udp) from a scaled lab, with rates and bytes times ``scale``.

    The measured figures are kept beside them as ``measured_*`` so nothing is lost.
    """
    if scale == 1:
        return data
    out = dict(data)
    for key in ("throughput_mbps", "sender_mbps"):
        if out.get(key) is not None:
            out["measured_" + key] = out[key]
            out[key] = real_rate(out[key], scale)
    if out.get("bytes_received") is not None:
        out["bytes_received"] = int(out["bytes_received"] * scale)
    out["intervals"] = [dict(i, mbps=real_rate(i["mbps"], scale)) for i in out.get("intervals", [])]
    out["scale"] = scale
    return out
