"""The cache's read-through logic against an in-memory origin: hits, misses, verification, versions."""

import random
import threading
import time

import pytest

from testbed.storage.lru import LruStore
from testbed.storage.objects import Catalog, corrupt_copy, sha256_hex
from testbed.storage.protocol import (
    ERR_DIGEST,
    ERR_UPSTREAM,
    ERR_VERSION,
    H_SHA256,
    H_VERSION,
    FetchError,
    Response,
    parse_object_path,
)
from testbed.storage.readthrough import ReadThrough


class FakeOrigin:
    """``fetch(path)`` answered from a Catalog; can corrupt, lie about versions or fail."""

    def __init__(self, catalog, corrupt_next=0, wrong_version=False, fail=False, gate=None):
        self.catalog = catalog
        self.corrupt_next = corrupt_next
        self.wrong_version = wrong_version
        self.fail = fail
        self.gate = gate  # an Event the fetch waits for (to hold a fetch in flight)
        self.calls = []
        self._lock = threading.Lock()

    def fetch(self, path):
        with self._lock:
            self.calls.append(path)
        if self.gate is not None:
            assert self.gate.wait(5)
        if self.fail:
            raise FetchError("connection refused")
        name, version, _ = parse_object_path(path)
        found = self.catalog.get(name, version)
        if found is None:
            return Response(404, {}, b"no such version\n")
        meta, body = found
        with self._lock:
            if self.corrupt_next:
                self.corrupt_next -= 1
                body = corrupt_copy(body, random.Random(0))
        served = meta.version + 1 if self.wrong_version else meta.version
        return Response(200, {H_VERSION: str(served), H_SHA256: meta.sha256}, body)


@pytest.fixture
def catalog():
    return Catalog(seed=1, shards=4, shard_size_bytes=1000)


def _cache(origin, capacity_bytes=10_000):
    return ReadThrough(LruStore(capacity_bytes), origin.fetch)


def test_miss_then_hit_without_a_second_origin_request(catalog):
    origin = FakeOrigin(catalog)
    cache = _cache(origin)
    meta = catalog.index()[0]
    first = cache.get(meta.name, 1, meta.sha256)
    assert first.status == 200 and not first.hit
    second = cache.get(meta.name, 1, meta.sha256)
    assert second.status == 200 and second.hit
    assert second.entry.body == catalog.get(meta.name, 1)[1]
    assert len(origin.calls) == 1
    stats = cache.stats()
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["bytes_from_upstream"] == 1000


def test_corrupt_origin_bytes_are_never_cached_or_served(catalog):
    origin = FakeOrigin(catalog, corrupt_next=1)
    cache = _cache(origin)
    meta = catalog.index()[0]
    bad = cache.get(meta.name, 1, meta.sha256)
    assert bad.status == 502 and bad.error == ERR_DIGEST and bad.entry is None
    assert cache.store.get(meta.name, 1) is None
    assert cache.stats()["digest_mismatch"] == 1
    good = cache.get(meta.name, 1, meta.sha256)  # the reader's retry
    assert good.status == 200 and not good.hit
    assert sha256_hex(good.entry.body) == meta.sha256


def test_corruption_is_caught_even_without_an_expected_digest(catalog):
    cache = _cache(FakeOrigin(catalog, corrupt_next=1))
    meta = catalog.index()[1]
    assert cache.get(meta.name, 1).error == ERR_DIGEST


def test_origin_bytes_must_match_the_digest_the_reader_expects(catalog):
    cache = _cache(FakeOrigin(catalog))
    meta = catalog.index()[0]
    answer = cache.get(meta.name, 1, "0" * 64)
    assert answer.status == 502 and answer.error == ERR_DIGEST
    assert cache.store.get(meta.name, 1) is None


def test_a_held_entry_that_does_not_match_the_expected_digest_is_dropped_and_refetched(catalog):
    origin = FakeOrigin(catalog)
    cache = _cache(origin)
    meta = catalog.index()[0]
    cache.get(meta.name, 1, meta.sha256)
    answer = cache.get(meta.name, 1, "f" * 64)
    assert answer.status == 502  # refetched, and the origin's bytes do not match either
    assert cache.stats()["digest_conflicts"] == 1
    assert len(origin.calls) == 2


def test_a_new_version_is_never_answered_with_the_old_bytes(catalog):
    origin = FakeOrigin(catalog)
    cache = _cache(origin)
    old = catalog.index()[0]
    cache.get(old.name, 1, old.sha256)
    new = catalog.publish(old.name)
    answer = cache.get(new.name, new.version, new.sha256)
    assert answer.status == 200 and not answer.hit
    assert answer.entry.version == 2 and answer.entry.sha256 == new.sha256
    assert answer.entry.body == catalog.get(new.name, 2)[1]
    assert cache.get(old.name, 1, old.sha256).hit  # the old version is still itself


def test_an_origin_answering_another_version_is_refused(catalog):
    cache = _cache(FakeOrigin(catalog, wrong_version=True))
    meta = catalog.index()[0]
    answer = cache.get(meta.name, 1, meta.sha256)
    assert answer.status == 502 and answer.error == ERR_VERSION
    assert cache.store.get(meta.name, 1) is None


def test_unreachable_origin_and_unknown_version(catalog):
    cache = _cache(FakeOrigin(catalog, fail=True))
    assert cache.get("shard-00000", 1).error == ERR_UPSTREAM
    assert cache.stats()["upstream_errors"] == 1
    cache = _cache(FakeOrigin(catalog))
    assert cache.get("shard-00000", 9).status == 404


def test_capacity_bounds_the_cache_and_evicted_versions_are_fetched_again(catalog):
    origin = FakeOrigin(catalog)
    cache = _cache(origin, capacity_bytes=2500)  # two shards of 1000 bytes
    index = catalog.index()
    for meta in index[:3]:
        cache.get(meta.name, 1, meta.sha256)
    assert cache.store.used_bytes <= 2500
    assert not cache.get(index[0].name, 1, index[0].sha256).hit  # evicted: a miss again
    assert cache.stats()["evictions"] >= 1


def test_an_object_larger_than_the_cache_is_served_but_not_held(catalog):
    cache = _cache(FakeOrigin(catalog), capacity_bytes=500)
    meta = catalog.index()[0]
    assert cache.get(meta.name, 1, meta.sha256).status == 200
    assert not cache.get(meta.name, 1, meta.sha256).hit


def test_concurrent_misses_for_one_version_make_one_origin_request(catalog):
    gate = threading.Event()
    origin = FakeOrigin(catalog, gate=gate)
    cache = _cache(origin)
    meta = catalog.index()[0]
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(cache.get(meta.name, 1, meta.sha256)))
               for _ in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while not origin.calls:  # the leader is in flight; the rest queue behind it or hit later
        assert time.monotonic() < deadline, "no request reached the origin"
        time.sleep(0.001)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(answers) == 5 and all(a.status == 200 for a in answers)
    assert len(origin.calls) == 1
    assert sum(1 for a in answers if a.hit) == 4
