"""A size-bounded least-recently-used store of object versions (the cache's memory).

Keys are ``(name, version)``: a new version of an object is a different key,
so it can never be answered with the bytes of an older one. Only the
read-through layer (:mod:`testbed.storage.readthrough`) puts entries here,
after it has verified them. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["Entry", "LruStore"]

Key = Tuple[str, int]


@dataclass(frozen=True)
class Entry:
    """A verified object version held by the cache."""

    name: str
    version: int
    sha256: str
    body: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.body)


class LruStore:
    """Entries up to ``capacity_bytes`` of bodies in total; the least recently used go first."""

    def __init__(self, capacity_bytes: int):
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._entries: "OrderedDict[Key, Entry]" = OrderedDict()
        self._lock = threading.Lock()
        self.used_bytes = 0
        self.evictions = 0
        self.evicted_bytes = 0
        self.refused = 0  # entries larger than the whole capacity

    def get(self, name: str, version: int) -> Optional[Entry]:
        """The entry for that version (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get((name, version))
            if entry is not None:
                self._entries.move_to_end((name, version))
            return entry

    def put(self, entry: Entry) -> bool:
        """Hold ``entry``, evicting the least recently used to make room.

        Returns False (and holds nothing) when the entry alone is larger than
        the capacity. Putting a key that is already held replaces it.
        """
        with self._lock:
            if entry.size_bytes > self.capacity_bytes:
                self.refused += 1
                return False
            self._remove((entry.name, entry.version))
            while self.used_bytes + entry.size_bytes > self.capacity_bytes:
                _key, old = self._entries.popitem(last=False)
                self.used_bytes -= old.size_bytes
                self.evictions += 1
                self.evicted_bytes += old.size_bytes
            self._entries[(entry.name, entry.version)] = entry
            self.used_bytes += entry.size_bytes
            return True

    def discard(self, name: str, version: int) -> bool:
        """Drop that version if held; True if it was."""
        with self._lock:
            return self._remove((name, version))

    def _remove(self, key: Key) -> bool:
        old = self._entries.pop(key, None)
        if old is None:
            return False
        self.used_bytes -= old.size_bytes
        return True

    def keys(self):
        """Held keys, least recently used first (a snapshot)."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> dict:
        with self._lock:
            return {"capacity_bytes": self.capacity_bytes, "used_bytes": self.used_bytes,
                    "entries": len(self._entries), "evictions": self.evictions,
                    "evicted_bytes": self.evicted_bytes, "refused_too_large": self.refused}
