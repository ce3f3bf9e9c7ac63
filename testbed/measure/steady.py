"""Time until a transfer's rate settles (part of "time-to-connectivity").

:func:`time_to_steady_s` reads the per-interval rates a throughput runner
returns (``[{"start_s", "end_s", "mbps"}, ...]``, as in the ``tcp`` result)
and answers how long after the start the rate stayed within a tolerance of its
final level for good.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from testbed.errors import InputError

__all__ = ["time_to_steady_s"]


def time_to_steady_s(
    intervals: Sequence[Mapping[str, float]], tolerance: float = 0.10
) -> Optional[float]:
    """Seconds from the first interval's start until the rate stays steady.

    The final level is the mean ``mbps`` of the last half of the intervals
    (``ceil(n / 2)`` of them). The answer is the ``start_s`` of the earliest
    interval from which every later interval is within ``tolerance`` (a
    fraction: 0.10 is 10 %) of that level, measured from the first interval's
    ``start_s``. ``None`` when there are no intervals, the final level is 0,
    or even the last interval is outside the tolerance.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
        math.isfinite(tolerance) and tolerance > 0
    ):
        raise InputError("tolerance", f"must be a number greater than 0, got {tolerance!r}")
    rates = []
    starts = []
    for index, interval in enumerate(intervals):
        try:
            rate = float(interval["mbps"])
            start = float(interval["start_s"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"intervals[{index}]", f"needs numeric 'start_s' and 'mbps': {exc}"
            ) from exc
        if not (math.isfinite(rate) and rate >= 0 and math.isfinite(start)):
            raise InputError(f"intervals[{index}]", "mbps must be >= 0 and values finite")
        rates.append(rate)
        starts.append(start)
    if not rates:
        return None
    tail = rates[len(rates) // 2:]
    final_mbps = sum(tail) / len(tail)
    if final_mbps <= 0:
        return None
    band_mbps = tolerance * final_mbps
    steady_from = None
    for index in range(len(rates) - 1, -1, -1):
        if abs(rates[index] - final_mbps) > band_mbps:
            break
        steady_from = index
    if steady_from is None:
        return None
    return starts[steady_from] - starts[0]
