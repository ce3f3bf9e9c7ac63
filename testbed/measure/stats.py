"""Summary statistics shared by every measurement runner.

:func:`summarize` gives the fixed set of figures that results.json stores for a
series of samples (``count, min, mean, p50, p90, p99, max, stdev``); the unit is
whatever the samples are in, so callers name the key (``rtt_ms``,
``one_way_delay_ms``). :func:`rfc3550_jitter` is the smoothed interarrival
jitter estimator of RFC 3550 section 6.4.1, the one iperf3 reports for UDP.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

import numpy as np

__all__ = ["SUMMARY_KEYS", "summarize", "rfc3550_jitter"]

SUMMARY_KEYS = ("count", "min", "mean", "p50", "p90", "p99", "max", "stdev")


def summarize(samples: Iterable[float]) -> Dict[str, Optional[float]]:
    """Count, min, mean, percentiles (linear interpolation), max and stdev.

    ``stdev`` is the population standard deviation (numpy's default, ddof=0),
    the same definition ping's ``mdev`` approximates. An empty series gives
    ``count`` 0 and ``None`` for every other figure.
    """
    values = np.asarray(list(samples), dtype=float)
    if values.size == 0:
        empty: Dict[str, Optional[float]] = {key: None for key in SUMMARY_KEYS}
        empty["count"] = 0
        return empty
    if not np.all(np.isfinite(values)):
        raise ValueError("samples must be finite numbers")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": int(values.size),
        "min": float(values.min()),
        "mean": float(values.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(values.max()),
        "stdev": float(values.std()),
    }


def rfc3550_jitter(transit_times: Iterable[float]) -> float:
    """RFC 3550 interarrival jitter over transit times in arrival order.

    ``transit_times[i]`` is ``R_i - S_i`` (arrival minus send time). For each
    consecutive pair, ``D = transit_i - transit_(i-1)`` and
    ``J += (|D| - J) / 16``, starting from ``J = 0``. The result is in the unit
    of the input; fewer than two transit times give 0.
    """
    jitter = 0.0
    previous: Optional[float] = None
    for transit in transit_times:
        value = float(transit)
        if previous is not None:
            jitter += (abs(value - previous) - jitter) / 16.0
        previous = value
    return jitter
