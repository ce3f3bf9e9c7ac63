"""The origin's objects: deterministic content, versions and sha256 digests.

Nothing is read from disk: the bytes of version ``v`` of object ``name`` come
from a generator seeded with ``"{seed}:{name}:{v}"``, so the same seed, shard
count and shard size give the same dataset (and the same digests) on every
run, and a new version of a shard has different bytes from the old one.

:class:`Catalog` is the origin's store: every version of every object it has
published, each with its digest. It keeps the bytes of every version in
memory (a superseded version can still be read by its number, as from a
versioned bucket); size the dataset to the machine.

:func:`corrupt_copy` flips bytes of a body: the origin uses it to emulate
silent corruption (a bad disk, a buggy middlebox) when asked to.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

__all__ = [
    "OBJECT_NAME_RE",
    "ObjectVersion",
    "Catalog",
    "shard_name",
    "shard_names",
    "object_bytes",
    "sha256_hex",
    "corrupt_copy",
]

#: Names that may appear in a URL path unquoted.
OBJECT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}\Z")


def shard_name(index: int) -> str:
    """``shard-00007``: the name of dataset shard ``index``."""
    return f"shard-{index:05d}"


def shard_names(count: int) -> List[str]:
    """The names of a dataset of ``count`` shards, in order."""
    return [shard_name(i) for i in range(count)]


def object_bytes(seed: int, name: str, version: int, size_bytes: int) -> bytes:
    """The content of version ``version`` of ``name``: ``size_bytes`` seeded bytes."""
    return random.Random(f"{seed}:{name}:{version}").randbytes(size_bytes)


def sha256_hex(data: bytes) -> str:
    """The sha256 digest of ``data`` in lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def corrupt_copy(data: bytes, rng: random.Random, flips: int = 1) -> bytes:
    """A copy of ``data`` with ``flips`` bytes changed (each XORed with a non-zero value).

    An empty body cannot be corrupted and comes back unchanged.
    """
    if not data:
        return data
    out = bytearray(data)
    for _ in range(flips):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out)


@dataclass(frozen=True)
class ObjectVersion:
    """One published version of one object."""

    name: str
    version: int
    size_bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "size_bytes": self.size_bytes,
                "sha256": self.sha256}


class Catalog:
    """Every version of every object, generated from a seed; thread-safe.

    ``Catalog(seed, shards, shard_size_bytes)`` publishes version 1 of each
    shard; :meth:`publish` adds the next version of one object.
    """

    def __init__(self, seed: int, shards: int, shard_size_bytes: int):
        if shards < 1 or shard_size_bytes < 1:
            raise ValueError("a catalog needs at least one shard of at least one byte")
        self.seed = seed
        self.shard_size_bytes = shard_size_bytes
        self._lock = threading.Lock()
        self._latest: Dict[str, ObjectVersion] = {}
        self._bodies: Dict[tuple, bytes] = {}
        self._meta: Dict[tuple, ObjectVersion] = {}
        for name in shard_names(shards):
            self._add(name, 1)

    def _add(self, name: str, version: int) -> ObjectVersion:
        body = object_bytes(self.seed, name, version, self.shard_size_bytes)
        meta = ObjectVersion(name, version, len(body), sha256_hex(body))
        self._bodies[(name, version)] = body
        self._meta[(name, version)] = meta
        self._latest[name] = meta
        return meta

    def publish(self, name: str) -> ObjectVersion:
        """Publish the next version of ``name``; KeyError if there is no such object."""
        with self._lock:
            current = self._latest[name]
            return self._add(name, current.version + 1)

    def get(self, name: str, version: int) -> Optional[tuple]:
        """``(ObjectVersion, body)`` of that version, or None if it was never published."""
        with self._lock:
            meta = self._meta.get((name, version))
            return None if meta is None else (meta, self._bodies[(name, version)])

    def index(self) -> List[ObjectVersion]:
        """The latest version of every object, by name."""
        with self._lock:
            return [self._latest[n] for n in sorted(self._latest)]

    def names(self) -> List[str]:
        with self._lock:
            return sorted(self._latest)
