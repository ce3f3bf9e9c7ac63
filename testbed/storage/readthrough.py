"""The regional cache's logic: read-through, verify before storing, one fetch per key.

:meth:`ReadThrough.get` answers a request for one object version:

* held and matching the digest the reader expects -> a hit, no round trip
  to the origin at all (the reader asked for an explicit version, and a
  version's bytes never change);
* otherwise one request to the origin (concurrent requests for the same
  version wait for that one fetch instead of each going upstream). The
  origin's bytes are hashed and compared with the digest the reader expects
  (from the index) and with the origin's own ``X-Object-Sha256``; only bytes
  that match are stored and served. A mismatch is counted and answered with
  a 502 ``digest-mismatch``, so the reader retries; corrupt bytes are never
  cached.

The upstream fetcher is injected (``fetch(path) -> Response``), so all of
this is tested without sockets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from testbed.storage.lru import Entry, LruStore
from testbed.storage.objects import sha256_hex
from testbed.storage.protocol import (
    ERR_DIGEST,
    ERR_UPSTREAM,
    ERR_VERSION,
    H_SHA256,
    H_VERSION,
    FetchError,
    Response,
    object_path,
)

__all__ = ["CacheAnswer", "ReadThrough"]

#: How long a request waits for another request's fetch of the same version.
COALESCE_WAIT_S = 60.0


@dataclass(frozen=True)
class CacheAnswer:
    """What the cache answers: 200 with an entry (hit or miss), or an error status."""

    status: int
    entry: Optional[Entry] = None
    hit: bool = False
    error: Optional[str] = None  # X-Storage-Error of a 502


class ReadThrough:
    """Read-through cache over ``store``, fetching misses with ``upstream(path)``."""

    COUNTERS = ("requests", "hits", "misses", "coalesced", "digest_mismatch", "digest_conflicts",
                "version_mismatch", "upstream_errors", "upstream_status_errors",
                "bytes_from_upstream", "bytes_served")

    def __init__(self, store: LruStore, upstream: Callable[[str], Response]):
        self.store = store
        self.upstream = upstream
        self._lock = threading.Lock()
        self._inflight: Dict[Tuple[str, int], threading.Event] = {}
        self.counters = {key: 0 for key in self.COUNTERS}

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[key] += amount

    def _held(self, name: str, version: int, expected: Optional[str]) -> Optional[Entry]:
        entry = self.store.get(name, version)
        if entry is not None and expected is not None and entry.sha256 != expected:
            # the reader expects other bytes for this version than we hold: never serve them
            self.store.discard(name, version)
            self._count("digest_conflicts")
            return None
        return entry

    def get(self, name: str, version: int, expected_sha256: Optional[str] = None) -> CacheAnswer:
        """Answer a request for version ``version`` of ``name``."""
        self._count("requests")
        key = (name, version)
        waited = False
        while True:
            entry = self._held(name, version, expected_sha256)
            if entry is not None:
                self._count("hits")
                if waited:
                    self._count("coalesced")
                self._count("bytes_served", entry.size_bytes)
                return CacheAnswer(200, entry, hit=True)
            with self._lock:
                event = self._inflight.get(key)
                leader = event is None
                if leader:
                    event = threading.Event()
                    self._inflight[key] = event
            if leader:
                try:
                    return self._fetch(name, version, expected_sha256)
                finally:
                    with self._lock:
                        self._inflight.pop(key, None)
                    event.set()
            # another request is fetching this version: wait for it, then look again
            # (if its fetch failed, this request fetches for itself)
            event.wait(COALESCE_WAIT_S)
            waited = True

    def _fetch(self, name: str, version: int, expected: Optional[str]) -> CacheAnswer:
        self._count("misses")
        try:
            resp = self.upstream(object_path(name, version))
        except FetchError:
            self._count("upstream_errors")
            return CacheAnswer(502, error=ERR_UPSTREAM)
        if resp.status != 200:
            self._count("upstream_status_errors")
            # the origin's own refusal (404: no such version) is the reader's answer too
            return CacheAnswer(resp.status if resp.status < 500 else 502, error=ERR_UPSTREAM)
        self._count("bytes_from_upstream", len(resp.body))
        if resp.header(H_VERSION) != str(version):
            self._count("version_mismatch")
            return CacheAnswer(502, error=ERR_VERSION)
        digest = sha256_hex(resp.body)
        claimed = resp.header(H_SHA256)
        if digest != claimed or (expected is not None and digest != expected):
            self._count("digest_mismatch")
            return CacheAnswer(502, error=ERR_DIGEST)
        entry = Entry(name, version, digest, resp.body)
        self.store.put(entry)  # False if larger than the whole cache: served, not held
        self._count("bytes_served", entry.size_bytes)
        return CacheAnswer(200, entry, hit=False)

    def stats(self) -> dict:
        with self._lock:
            doc = dict(self.counters)
        doc.update(self.store.stats())
        return doc
