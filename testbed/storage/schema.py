"""JSON Schema of the storage step's result, for results.schema.json's variant ``storage``.

:func:`storage_schema` returns the definition to place under
``$defs.storage`` of ``testbed/data/results.schema.json`` (with
``"storage": {"$ref": "#/$defs/storage"}`` among a variant's properties).
Latency summaries refer to the results schema's own ``stats`` definition
(``count, min, mean, p50, p90, p99, max, stdev``). Tested against real
results in tests/unit/test_storage_docs.py.
"""

from __future__ import annotations

from typing import Dict

__all__ = ["storage_schema", "EPOCH_FIELDS", "TOTAL_FIELDS"]

_INT = {"type": "integer", "minimum": 0}
_NUM_OR_NULL = {"type": ["number", "null"]}
_RATIO = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_HOST = {"type": "object", "required": ["host", "site"], "additionalProperties": False,
         "properties": {"host": {"type": "string"}, "site": {"type": ["string", "null"]}}}

_COUNTS = ("reads", "failed_reads", "cache_hits", "cache_misses", "corrupt_injected",
           "corrupt_detected", "corrupt_detected_by_reader", "corrupt_detected_by_cache",
           "stale_detected", "retries", "errors", "bytes_fetched", "bytes_verified",
           "origin_bytes_sent", "origin_objects_served", "cache_evictions", "updated_shards")

#: Keys of one epoch's figures.
EPOCH_FIELDS = ("epoch", "readers", "latency_ms", "latency_p50_ms", "latency_p99_ms",
                "throughput_mbps", "elapsed_s", "hit_ratio", "failures") + _COUNTS

#: Keys of the totals.
TOTAL_FIELDS = ("epochs", "latency_ms", "latency_p50_ms", "latency_p99_ms", "throughput_mbps",
                "hit_ratio", "all_verified") + _COUNTS


def storage_schema(stats_ref: str = "#/$defs/stats") -> Dict[str, object]:
    """The ``storage`` definition; ``stats_ref`` points at the latency summary's schema."""
    stats = {"$ref": stats_ref}
    epoch_props: Dict[str, object] = {key: _INT for key in _COUNTS}
    epoch_props.update(
        epoch={"type": "integer", "minimum": 1}, readers=_INT, latency_ms=stats,
        latency_p50_ms=_NUM_OR_NULL, latency_p99_ms=_NUM_OR_NULL, throughput_mbps=_NUM_OR_NULL,
        elapsed_s={"type": "number", "minimum": 0}, hit_ratio=_RATIO,
        failures={"type": "array", "maxItems": 20, "items": {
            "type": "object", "required": ["name", "version", "attempts", "error"],
            "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
                           "attempts": {"type": "integer"},
                           "error": {"type": ["string", "null"]}}}},
    )
    total_props: Dict[str, object] = {key: _INT for key in _COUNTS}
    total_props.update(
        epochs={"type": "integer", "minimum": 1}, latency_ms=stats, latency_p50_ms=_NUM_OR_NULL,
        latency_p99_ms=_NUM_OR_NULL, throughput_mbps=_NUM_OR_NULL, hit_ratio=_RATIO,
        all_verified={"type": "boolean"},
    )
    return {
        "type": "object",
        "description": "Central object storage read from other sites (docs/storage.md).",
        "required": ["origin", "readers", "caches", "options", "dataset", "cache_enabled",
                     "epochs", "totals", "servers"],
        "additionalProperties": False,
        "properties": {
            "origin": _HOST,
            "readers": {"type": "array", "minItems": 1, "items": _HOST},
            "caches": {"type": "array", "items": _HOST},
            "options": {"type": "object"},
            "dataset": {"type": "object", "required": ["shards", "shard_size_bytes",
                                                       "dataset_bytes", "seed"],
                        "additionalProperties": False,
                        "properties": {"shards": _INT, "shard_size_bytes": _INT,
                                       "dataset_bytes": _INT, "seed": _INT}},
            "cache_enabled": {"type": "boolean"},
            "epochs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": list(EPOCH_FIELDS), "additionalProperties": False,
                "properties": epoch_props}},
            "totals": {"type": "object", "required": list(TOTAL_FIELDS),
                       "additionalProperties": False, "properties": total_props},
            "servers": {"type": "object", "required": ["origin", "caches"],
                        "properties": {"origin": {"type": "object"},
                                       "caches": {"type": "object",
                                                  "additionalProperties": {"type": "object"}}}},
        },
    }
