"""Turn readers' documents and servers' counters into the step's per-epoch and total figures.

Definitions (every figure of one epoch, over all its readers):

* ``latency_ms`` -- summary (``count, min, mean, p50, p90, p99, max,
  stdev``) of verified reads, each from its first request to its verified
  last byte, retries included; ``latency_p50_ms``/``latency_p99_ms`` repeat
  two of them at the top level.
* ``throughput_mbps`` -- verified bytes x 8 / the slowest reader's elapsed
  time (readers run at once), in Mbit/s.
* ``hit_ratio`` -- share of verified reads a cache answered from memory
  (``X-Cache: hit``); None when the readers had no cache.
* ``corrupt_injected`` -- object answers the origin corrupted on purpose
  (``corrupt_pct``); ``corrupt_detected`` = ``corrupt_detected_by_reader``
  (a body that failed the reader's digest check) +
  ``corrupt_detected_by_cache`` (origin bytes the cache refused to store).
  Corruption added on the path (a ``corrupt`` link profile) that survived
  TCP's checksum would show as reader detections beyond the injected count.
* ``bytes_fetched`` -- body bytes readers received, rejected ones included;
  ``origin_bytes_sent`` -- object bytes that left the origin (its egress).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from testbed.measure.stats import summarize

__all__ = ["counter_delta", "reader_latencies_ms", "summarize_epoch", "summarize_totals",
           "READER_COUNTERS"]

#: Counters every reader document carries, summed over readers.
READER_COUNTERS = ("reads", "failed_reads", "attempts", "retries", "bytes_fetched",
                   "bytes_verified", "cache_hits", "cache_misses", "corrupt_detected",
                   "corrupt_rejected_upstream", "stale_detected", "errors")

#: Figures summed from epochs into the totals.
_SUMMED = ("reads", "failed_reads", "retries", "errors", "bytes_fetched", "bytes_verified",
           "cache_hits", "cache_misses", "corrupt_injected", "corrupt_detected",
           "corrupt_detected_by_reader", "corrupt_detected_by_cache", "stale_detected",
           "origin_bytes_sent", "origin_objects_served", "cache_evictions", "updated_shards")


def counter_delta(before: Mapping[str, object], after: Mapping[str, object]) -> Dict[str, int]:
    """``after - before`` for every integer counter present in both."""
    out = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(old, int):
            out[key] = value - old
    return out


def _sum(docs: Iterable[Mapping[str, object]], key: str) -> int:
    return sum(int(doc.get(key) or 0) for doc in docs)


def _ratio(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None


def _mbps(size_bytes: int, elapsed_s: float) -> Optional[float]:
    return round(size_bytes * 8 / elapsed_s / 1e6, 3) if elapsed_s > 0 else None


def summarize_epoch(epoch: int, readers: Sequence[Mapping[str, object]],
                    origin_delta: Mapping[str, int], cache_deltas: Sequence[Mapping[str, int]],
                    updated_shards: int = 0) -> dict:
    """One epoch's figures (see the module doc) from its reader documents and counter deltas."""
    totals = {key: _sum(readers, key) for key in READER_COUNTERS}
    stats = summarize(reader_latencies_ms(readers))
    elapsed_s = max((float(doc.get("elapsed_s") or 0.0) for doc in readers), default=0.0)
    via_cache = any(doc.get("via_cache") for doc in readers)
    by_cache = _sum(cache_deltas, "digest_mismatch")
    return {
        "epoch": epoch,
        "readers": len(readers),
        "reads": totals["reads"],
        "failed_reads": totals["failed_reads"],
        "latency_ms": stats,
        "latency_p50_ms": stats["p50"],
        "latency_p99_ms": stats["p99"],
        "throughput_mbps": _mbps(totals["bytes_verified"], elapsed_s),
        "elapsed_s": round(elapsed_s, 6),
        "hit_ratio": _ratio(totals["cache_hits"], totals["cache_hits"] + totals["cache_misses"])
        if via_cache else None,
        "cache_hits": totals["cache_hits"],
        "cache_misses": totals["cache_misses"],
        "corrupt_injected": int(origin_delta.get("corrupted_responses", 0)),
        "corrupt_detected": totals["corrupt_detected"] + by_cache,
        "corrupt_detected_by_reader": totals["corrupt_detected"],
        "corrupt_detected_by_cache": by_cache,
        "stale_detected": totals["stale_detected"],
        "retries": totals["retries"],
        "errors": totals["errors"],
        "bytes_fetched": totals["bytes_fetched"],
        "bytes_verified": totals["bytes_verified"],
        "origin_bytes_sent": int(origin_delta.get("bytes_sent", 0)),
        "origin_objects_served": int(origin_delta.get("objects_served", 0)),
        "cache_evictions": _sum(cache_deltas, "evictions"),
        "updated_shards": updated_shards,
        "failures": [f for doc in readers for f in doc.get("failures", [])][:20],
    }


def reader_latencies_ms(readers: Sequence[Mapping[str, object]]) -> List[float]:
    """Every verified read's latency from a set of reader documents."""
    return [float(x) for doc in readers for x in doc.get("latencies_ms", [])]


def summarize_totals(epochs: Sequence[Mapping[str, object]], latencies_ms: Sequence[float]) -> dict:
    """Sums over ``epochs``, with latency and hit ratio over every read (``latencies_ms``)."""
    totals = {key: sum(int(e.get(key) or 0) for e in epochs) for key in _SUMMED}
    stats = summarize(latencies_ms)
    elapsed_s = sum(float(e.get("elapsed_s") or 0.0) for e in epochs)
    via_cache = any(e.get("hit_ratio") is not None for e in epochs)
    totals.update(
        epochs=len(epochs),
        latency_ms=stats,
        latency_p50_ms=stats["p50"],
        latency_p99_ms=stats["p99"],
        throughput_mbps=_mbps(totals["bytes_verified"], elapsed_s),
        hit_ratio=_ratio(totals["cache_hits"], totals["cache_hits"] + totals["cache_misses"])
        if via_cache else None,
        all_verified=totals["failed_reads"] == 0,
    )
    return totals
