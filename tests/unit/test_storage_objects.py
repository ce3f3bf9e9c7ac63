"""Seeded objects, versions and digests of the origin's catalog; the LRU store of the cache."""

import random

import pytest

from testbed.storage.lru import Entry, LruStore
from testbed.storage.objects import (
    OBJECT_NAME_RE,
    Catalog,
    corrupt_copy,
    object_bytes,
    sha256_hex,
    shard_name,
    shard_names,
)


def test_object_bytes_are_deterministic_per_seed_name_and_version():
    a = object_bytes(7, "shard-00001", 1, 4096)
    assert a == object_bytes(7, "shard-00001", 1, 4096)
    assert len(a) == 4096
    assert a != object_bytes(8, "shard-00001", 1, 4096)
    assert a != object_bytes(7, "shard-00002", 1, 4096)
    assert a != object_bytes(7, "shard-00001", 2, 4096)


def test_shard_names_are_valid_object_names():
    names = shard_names(3)
    assert names == ["shard-00000", "shard-00001", "shard-00002"]
    assert shard_name(12345) == "shard-12345"
    assert all(OBJECT_NAME_RE.match(n) for n in names)


def test_sha256_hex():
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_corrupt_copy_changes_exactly_one_byte_and_keeps_the_original():
    data = bytes(1000)
    rng = random.Random(1)
    bad = corrupt_copy(data, rng)
    assert data == bytes(1000)
    assert len(bad) == len(data)
    assert sum(1 for x, y in zip(data, bad) if x != y) == 1
    assert sha256_hex(bad) != sha256_hex(data)
    assert corrupt_copy(b"", rng) == b""


def test_catalog_publishes_version_one_of_every_shard_with_its_digest():
    cat = Catalog(seed=3, shards=4, shard_size_bytes=512)
    index = cat.index()
    assert [o.name for o in index] == shard_names(4)
    for meta in index:
        assert meta.version == 1 and meta.size_bytes == 512
        got_meta, body = cat.get(meta.name, 1)
        assert got_meta == meta
        assert sha256_hex(body) == meta.sha256
        assert body == object_bytes(3, meta.name, 1, 512)


def test_catalog_publish_adds_a_new_version_and_keeps_the_old():
    cat = Catalog(seed=0, shards=2, shard_size_bytes=64)
    old = cat.index()[0]
    new = cat.publish(old.name)
    assert new.version == 2 and new.sha256 != old.sha256
    assert cat.index()[0] == new
    assert cat.get(old.name, 1)[0] == old  # still readable by its number
    assert cat.get(old.name, 3) is None
    with pytest.raises(KeyError):
        cat.publish("no-such-object")


def test_catalog_refuses_an_empty_dataset():
    with pytest.raises(ValueError):
        Catalog(seed=0, shards=0, shard_size_bytes=1)


def _entry(name, version, size, fill=b"x"):
    return Entry(name, version, sha256_hex(fill * size), fill * size)


def test_lru_evicts_the_least_recently_used_first():
    store = LruStore(300)
    for i in range(3):
        assert store.put(_entry(f"o{i}", 1, 100))
    store.get("o0", 1)  # o0 is now the most recently used
    assert store.put(_entry("o3", 1, 100))
    assert store.get("o1", 1) is None  # evicted
    assert [k for k in store.keys()] == [("o2", 1), ("o0", 1), ("o3", 1)]
    stats = store.stats()
    assert stats["used_bytes"] == 300 and stats["evictions"] == 1 and stats["evicted_bytes"] == 100


def test_lru_never_exceeds_capacity_and_evicts_as_many_as_needed():
    store = LruStore(250)
    for i in range(5):
        store.put(_entry(f"o{i}", 1, 50))
    assert store.used_bytes == 250
    store.put(_entry("big", 1, 200))
    assert store.used_bytes <= 250
    assert store.get("big", 1) is not None
    assert store.keys() == [("o4", 1), ("big", 1)]  # the four oldest made room


def test_lru_refuses_an_entry_larger_than_the_whole_cache():
    store = LruStore(100)
    store.put(_entry("a", 1, 60))
    assert not store.put(_entry("huge", 1, 101))
    assert store.get("a", 1) is not None  # nothing was evicted for it
    assert store.stats()["refused_too_large"] == 1
    assert not LruStore(0).put(_entry("a", 1, 1))


def test_lru_keys_are_versions_so_a_new_version_is_a_different_entry():
    store = LruStore(1000)
    store.put(_entry("a", 1, 10, b"1"))
    assert store.get("a", 2) is None
    store.put(_entry("a", 2, 10, b"2"))
    assert store.get("a", 1).body == b"1" * 10
    assert store.get("a", 2).body == b"2" * 10


def test_lru_replacing_a_key_keeps_the_accounting_right():
    store = LruStore(1000)
    store.put(_entry("a", 1, 10))
    store.put(_entry("a", 1, 30))
    assert store.used_bytes == 30 and len(store) == 1
    assert store.discard("a", 1) and not store.discard("a", 1)
    assert store.used_bytes == 0


def test_lru_rejects_a_negative_capacity():
    with pytest.raises(ValueError):
        LruStore(-1)
