"""The origin and cache HTTP handlers, driven in memory (no sockets): protocol, corruption, the whole chain.

Each request is fed to the real handler class through a fake connection
(``makefile``/``sendall`` on byte buffers) and its answer parsed back with
``http.client``, so the HTTP layer is tested without a socket in the root
namespace.
"""

import http.client
import io
import json
import types

import pytest

from testbed.storage.cache import CacheHandler
from testbed.storage.lru import LruStore
from testbed.storage.objects import Catalog, sha256_hex
from testbed.storage.protocol import H_CACHE, H_ERROR, H_SHA256, H_VERSION, Response, parse_index
from testbed.storage.readthrough import ReadThrough
from testbed.storage.reader import fetch_index, read_epoch
from testbed.storage.server import Origin, OriginHandler


class _Conn:
    """Enough of a socket for socketserver.StreamRequestHandler."""

    def __init__(self, request_bytes):
        self._in = io.BytesIO(request_bytes)
        self.out = bytearray()

    def makefile(self, mode, *_args):
        return self._in if "r" in mode else io.BytesIO()

    def sendall(self, data):
        self.out += data

    def settimeout(self, _t):
        pass

    def setsockopt(self, *_args):
        pass


class _Sock:
    def __init__(self, data):
        self._data = data

    def makefile(self, _mode, *_args):
        return io.BytesIO(self._data)


class InMemory:
    """A fetcher (``fetch(path, method)``) that hands each request to ``handler_cls``."""

    def __init__(self, handler_cls, server):
        self.handler_cls = handler_cls
        self.server = server

    def fetch(self, path, method="GET", body=b""):
        head = (f"{method} {path} HTTP/1.1\r\nHost: lab\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        conn = _Conn(head + body)
        self.handler_cls(conn, ("10.0.0.9", 40000), self.server)
        resp = http.client.HTTPResponse(_Sock(bytes(conn.out)), method=method)
        resp.begin()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)


def origin_server(shards=8, size=4096, corrupt_pct=0.0):
    origin = Origin(Catalog(seed=5, shards=shards, shard_size_bytes=size), corrupt_pct=corrupt_pct, seed=5)
    return InMemory(OriginHandler, types.SimpleNamespace(origin=origin, connection_errors=0)), origin


def cache_server(upstream, capacity_bytes=1 << 20):
    cache = ReadThrough(LruStore(capacity_bytes), upstream.fetch)
    return InMemory(CacheHandler, types.SimpleNamespace(cache=cache, connection_errors=0)), cache


def test_origin_serves_an_intact_index_and_objects_with_version_and_digest():
    web, origin = origin_server()
    objects = parse_index(web.fetch("/index"))
    assert len(objects) == 8
    meta = objects[3]
    resp = web.fetch(f"/objects/{meta.name}?version=1")
    assert resp.status == 200
    assert resp.header(H_VERSION) == "1" and resp.header(H_SHA256) == meta.sha256
    assert sha256_hex(resp.body) == meta.sha256 and len(resp.body) == 4096
    assert origin.stats()["objects_served"] == 1 and origin.stats()["bytes_sent"] == 4096


def test_origin_refuses_bad_and_unknown_requests():
    web, origin = origin_server()
    assert web.fetch("/objects/shard-00000").status == 400  # no version: a cache could not key it
    assert web.fetch("/objects/shard-00000?version=7").status == 404
    assert web.fetch("/objects/nope?version=1").status == 404
    assert web.fetch("/elsewhere").status == 404
    assert web.fetch("/objects/shard-00000", method="POST", body=b"bytes").status == 400
    assert origin.stats()["bad_requests"] == 1


def test_publish_makes_a_new_version_the_index_names():
    web, _origin = origin_server()
    resp = web.fetch("/objects/shard-00002", method="POST")
    assert resp.status == 200
    doc = json.loads(resp.body)
    assert doc["version"] == 2
    index = {o.name: o for o in parse_index(web.fetch("/index"))}
    assert index["shard-00002"].version == 2 and index["shard-00002"].sha256 == doc["sha256"]
    assert web.fetch("/objects/shard-00002?version=1").status == 200  # old one still there


def test_emulated_silent_corruption_keeps_the_true_digest_in_the_headers():
    web, origin = origin_server(corrupt_pct=100.0)
    meta = parse_index(web.fetch("/index"))[0]  # the index is never corrupted
    resp = web.fetch(f"/objects/{meta.name}?version=1")
    assert resp.status == 200 and resp.header(H_SHA256) == meta.sha256
    assert sha256_hex(resp.body) != meta.sha256
    assert origin.stats()["corrupted_responses"] == 1
    with pytest.raises(ValueError):
        Origin(Catalog(0, 1, 1), corrupt_pct=101)


def test_cache_marks_misses_and_hits_and_never_serves_the_index():
    origin_web, origin = origin_server()
    web, _cache = cache_server(origin_web)
    meta = parse_index(origin_web.fetch("/index"))[0]
    path = f"/objects/{meta.name}?version=1&sha256={meta.sha256}"
    first, second = web.fetch(path), web.fetch(path)
    assert first.header(H_CACHE) == "miss" and second.header(H_CACHE) == "hit"
    assert first.body == second.body and sha256_hex(second.body) == meta.sha256
    assert origin.stats()["objects_served"] == 1
    assert web.fetch("/index").status == 404
    assert web.fetch("/objects/x").status == 400
    stats = json.loads(web.fetch("/stats").body)
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["role"] == "cache"


def test_cache_answers_a_corrupt_origin_with_a_502_and_stores_nothing():
    origin_web, _origin = origin_server(corrupt_pct=100.0)
    web, cache = cache_server(origin_web)
    meta = parse_index(origin_web.fetch("/index"))[0]
    resp = web.fetch(f"/objects/{meta.name}?version=1&sha256={meta.sha256}")
    assert resp.status == 502 and resp.header(H_ERROR) == "digest-mismatch"
    assert len(cache.store) == 0


@pytest.mark.parametrize("with_cache", [False, True])
def test_every_injected_corruption_is_detected_and_every_read_ends_verified(with_cache):
    origin_web, origin = origin_server(shards=40, size=2048, corrupt_pct=30.0)
    source = cache_server(origin_web)[0] if with_cache else origin_web
    objects, _attempts, _ms = fetch_index(origin_web, max_retries=0)
    stats, _elapsed = read_epoch(source.fetch, objects, parallel=4, max_retries=20)
    doc = stats.to_dict()
    injected = origin.stats()["corrupted_responses"]
    assert injected > 0
    assert doc["reads"] == 40 and doc["failed_reads"] == 0
    detected = doc["corrupt_rejected_upstream"] if with_cache else doc["corrupt_detected"]
    assert detected == injected
    assert doc["retries"] == injected
    if with_cache:
        assert doc["corrupt_detected"] == 0  # the cache caught all of it before the reader
        assert doc["cache_misses"] == 40
        again, _ = read_epoch(source.fetch, objects, parallel=4, max_retries=0)
        assert again.cache_hits == 40 and origin.stats()["corrupted_responses"] == injected
