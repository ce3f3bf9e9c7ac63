"""A data loader's read: fetch one object version, verify every byte, retry a bounded number of times.

:func:`read_verified` asks for the exact version the index named (and the
digest it expects). An answer is accepted only when it is a 200 whose
``X-Object-Version`` is that version and whose body hashes to the index's
sha256 -- so neither a corrupted body nor a stale version is ever accepted.
Anything else is counted by kind and retried, up to ``max_retries`` times:

* ``corrupt_detected`` -- a 200 whose bytes do not match the digest
  (corruption that reached this reader);
* ``corrupt_rejected_upstream`` -- a cache's 502 ``digest-mismatch``: the
  cache caught the origin's corrupted bytes before storing them;
* ``stale_detected`` -- a 200 carrying another version than asked for;
* ``errors`` -- no answer (timeout, reset) or another 5xx.

A 4xx is not retried (the version does not exist; asking again cannot help).
The fetcher is injected (``fetch(path) -> Response``), so the logic is
tested against an in-memory fake.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from testbed.storage.objects import ObjectVersion, sha256_hex
from testbed.storage.protocol import (
    ERR_DIGEST,
    H_CACHE,
    H_ERROR,
    H_VERSION,
    FetchError,
    Response,
    object_path,
)

__all__ = ["PROBLEMS", "ReadOutcome", "ReadStats", "read_verified"]

#: The kinds of failed attempt a read counts.
PROBLEMS = ("corrupt_detected", "corrupt_rejected_upstream", "stale_detected", "errors")


@dataclass
class ReadOutcome:
    """One object read: verified or failed, after how many attempts, and what went wrong."""

    name: str
    version: int
    ok: bool = False
    attempts: int = 0
    latency_ms: float = 0.0  # first request to verified bytes (or to giving up)
    bytes_fetched: int = 0  # every body byte received, rejected attempts included
    bytes_verified: int = 0
    cache: Optional[str] = None  # "hit" / "miss" of the accepted answer, None without a cache
    problems: Dict[str, int] = field(default_factory=lambda: {k: 0 for k in PROBLEMS})
    last_error: Optional[str] = None

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)


def _judge(resp: Response, want: ObjectVersion) -> Optional[str]:
    """None if ``resp`` carries exactly ``want``'s bytes, else the problem kind."""
    if resp.status == 502 and resp.header(H_ERROR) == ERR_DIGEST:
        return "corrupt_rejected_upstream"
    if resp.status != 200:
        return "errors"
    if resp.header(H_VERSION) != str(want.version):
        return "stale_detected"
    if len(resp.body) != want.size_bytes or sha256_hex(resp.body) != want.sha256:
        return "corrupt_detected"
    return None


def read_verified(fetch: Callable[[str], Response], want: ObjectVersion, max_retries: int,
                  clock: Callable[[], float] = time.monotonic) -> ReadOutcome:
    """Read ``want`` through ``fetch``, accepting only verified bytes (see the module doc)."""
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    out = ReadOutcome(want.name, want.version)
    path = object_path(want.name, want.version, want.sha256)
    start = clock()
    for _attempt in range(max_retries + 1):
        out.attempts += 1
        try:
            resp = fetch(path)
        except FetchError as exc:
            out.problems["errors"] += 1
            out.last_error = str(exc)
            continue
        out.bytes_fetched += len(resp.body) if resp.status == 200 else 0
        problem = _judge(resp, want)
        if problem is None:
            out.ok = True
            out.bytes_verified = len(resp.body)
            out.cache = resp.header(H_CACHE)
            break
        out.problems[problem] += 1
        out.last_error = f"HTTP {resp.status}: {problem}"
        if 400 <= resp.status < 500:
            break  # no such version: asking again cannot help
    out.latency_ms = (clock() - start) * 1000.0
    return out


class ReadStats:
    """Totals over many reads (thread-safe); :meth:`to_dict` is the reader's report."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reads = 0
        self.failed_reads = 0
        self.attempts = 0
        self.retries = 0
        self.bytes_fetched = 0
        self.bytes_verified = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.problems = {k: 0 for k in PROBLEMS}
        self.latencies_ms: List[float] = []
        self.failures: List[dict] = []

    def add(self, out: ReadOutcome) -> None:
        with self._lock:
            self.attempts += out.attempts
            self.retries += out.retries
            self.bytes_fetched += out.bytes_fetched
            for key, value in out.problems.items():
                self.problems[key] += value
            if not out.ok:
                self.failed_reads += 1
                self.failures.append({"name": out.name, "version": out.version,
                                      "attempts": out.attempts, "error": out.last_error})
                return
            self.reads += 1
            self.bytes_verified += out.bytes_verified
            self.latencies_ms.append(round(out.latency_ms, 3))
            if out.cache == "hit":
                self.cache_hits += 1
            elif out.cache == "miss":
                self.cache_misses += 1

    def to_dict(self) -> dict:
        with self._lock:
            return {"reads": self.reads, "failed_reads": self.failed_reads,
                    "attempts": self.attempts, "retries": self.retries,
                    "bytes_fetched": self.bytes_fetched, "bytes_verified": self.bytes_verified,
                    "cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
                    **self.problems, "latencies_ms": list(self.latencies_ms),
                    "failures": list(self.failures)}
