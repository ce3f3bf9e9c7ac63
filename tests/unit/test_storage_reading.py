"""A reader's verify-and-retry logic and its partition of an epoch, against in-memory fetchers."""

import json

import pytest

from testbed.storage.objects import ObjectVersion, object_bytes, sha256_hex, shard_names
from testbed.storage.protocol import (
    ERR_DIGEST,
    H_CACHE,
    H_CONTENT_SHA256,
    H_ERROR,
    H_VERSION,
    FetchError,
    ProtocolError,
    Response,
    encode_json,
    object_path,
    parse_index,
    parse_object_path,
)
from testbed.storage.reader import fetch_index, partition, read_epoch
from testbed.storage.reading import ReadStats, read_verified

BODY = object_bytes(0, "shard-00000", 1, 2048)
WANT = ObjectVersion("shard-00000", 1, len(BODY), sha256_hex(BODY))


def ok(body=BODY, version=1, cache=None):
    headers = {H_VERSION: str(version)}
    if cache:
        headers[H_CACHE] = cache
    return Response(200, headers, body)


class Script:
    """A fetcher that plays a list of answers (Response or exception), recording paths."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.paths = []

    def __call__(self, path):
        self.paths.append(path)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self, step_s=0.001):
        self.now = 0.0
        self.step_s = step_s

    def __call__(self):
        self.now += self.step_s
        return self.now


def test_verified_on_the_first_attempt():
    fetch = Script(ok(cache="hit"))
    out = read_verified(fetch, WANT, max_retries=3, clock=Clock(0.005))
    assert out.ok and out.attempts == 1 and out.retries == 0
    assert out.bytes_verified == out.bytes_fetched == len(BODY)
    assert out.cache == "hit"
    assert out.latency_ms == pytest.approx(5.0)
    assert fetch.paths == [object_path(WANT.name, 1, WANT.sha256)]


def test_a_corrupted_body_is_detected_counted_and_retried():
    bad = bytearray(BODY)
    bad[100] ^= 0x01
    out = read_verified(Script(ok(bytes(bad)), ok()), WANT, max_retries=3)
    assert out.ok and out.attempts == 2 and out.retries == 1
    assert out.problems["corrupt_detected"] == 1
    assert out.bytes_fetched == 2 * len(BODY) and out.bytes_verified == len(BODY)


def test_a_truncated_body_is_corruption_too():
    out = read_verified(Script(ok(BODY[:-1]), ok()), WANT, max_retries=1)
    assert out.ok and out.problems["corrupt_detected"] == 1


def test_corrupted_bytes_are_never_accepted_when_retries_run_out():
    bad = bytes(len(BODY))
    out = read_verified(Script(ok(bad), ok(bad), ok(bad)), WANT, max_retries=2)
    assert not out.ok and out.attempts == 3
    assert out.problems["corrupt_detected"] == 3
    assert out.bytes_verified == 0
    assert "corrupt_detected" in out.last_error


def test_a_stale_version_is_detected_and_retried():
    old = object_bytes(0, "shard-00000", 0, 2048)
    out = read_verified(Script(ok(old, version=0), ok()), WANT, max_retries=1)
    assert out.ok and out.problems["stale_detected"] == 1


def test_stale_even_with_the_right_bytes_is_not_accepted():
    out = read_verified(Script(ok(version=2)), WANT, max_retries=0)
    assert not out.ok and out.problems["stale_detected"] == 1


def test_a_cache_rejection_is_counted_apart_and_retried():
    rejected = Response(502, {H_ERROR: ERR_DIGEST}, b"digest-mismatch\n")
    out = read_verified(Script(rejected, ok(cache="miss")), WANT, max_retries=1)
    assert out.ok and out.problems["corrupt_rejected_upstream"] == 1
    assert out.problems["corrupt_detected"] == 0
    assert out.bytes_fetched == len(BODY)  # an error body is not object bytes
    assert out.cache == "miss"


def test_no_answer_and_server_errors_are_retried():
    out = read_verified(Script(FetchError("timed out"), Response(503), ok()), WANT, max_retries=2)
    assert out.ok and out.problems["errors"] == 2 and out.attempts == 3


def test_a_missing_version_is_not_retried():
    fetch = Script(Response(404, {}, b"no such version\n"), ok())
    out = read_verified(fetch, WANT, max_retries=5)
    assert not out.ok and out.attempts == 1 and len(fetch.paths) == 1


def test_max_retries_zero_is_one_attempt_and_negative_is_refused():
    assert read_verified(Script(ok()), WANT, max_retries=0).ok
    with pytest.raises(ValueError):
        read_verified(Script(), WANT, max_retries=-1)


def test_read_stats_add_up_outcomes():
    stats = ReadStats()
    bad = bytes(len(BODY))
    stats.add(read_verified(Script(ok(bad), ok(cache="miss")), WANT, 1))
    stats.add(read_verified(Script(ok(cache="hit")), WANT, 1))
    stats.add(read_verified(Script(ok(bad), ok(bad)), WANT, 1))
    doc = stats.to_dict()
    assert doc["reads"] == 2 and doc["failed_reads"] == 1
    assert doc["attempts"] == 5 and doc["retries"] == 2
    assert doc["corrupt_detected"] == 3
    assert doc["cache_hits"] == 1 and doc["cache_misses"] == 1
    assert doc["bytes_verified"] == 2 * len(BODY)
    assert doc["bytes_fetched"] == 5 * len(BODY)
    assert len(doc["latencies_ms"]) == 2
    assert doc["failures"][0]["name"] == WANT.name
    json.dumps(doc)


def _catalog_objects(count):
    return [ObjectVersion(n, 1, 10, "0" * 64) for n in shard_names(count)]


def test_partition_covers_every_object_once_across_readers():
    objects = _catalog_objects(10)
    parts = [partition(objects, seed=1, epoch=1, reader_index=i, reader_count=3) for i in range(3)]
    names = sorted(o.name for part in parts for o in part)
    assert names == shard_names(10)
    assert [len(p) for p in parts] == [4, 3, 3]


def test_partition_is_seeded_and_changes_order_with_the_epoch():
    objects = _catalog_objects(20)
    one = [o.name for o in partition(objects, 1, 1, 0, 1)]
    assert one == [o.name for o in partition(list(reversed(objects)), 1, 1, 0, 1)]
    assert one != [o.name for o in partition(objects, 1, 2, 0, 1)]
    with pytest.raises(ValueError):
        partition(objects, 1, 1, 3, 3)


def test_read_epoch_reads_every_object_in_parallel():
    bodies = {n: object_bytes(0, n, 1, 256) for n in shard_names(8)}
    objects = [ObjectVersion(n, 1, 256, sha256_hex(b)) for n, b in bodies.items()]

    def fetch(path):
        name, version, _ = parse_object_path(path)
        return ok(bodies[name], version)

    stats, elapsed_s = read_epoch(fetch, objects, parallel=3, max_retries=0)
    assert stats.reads == 8 and stats.failed_reads == 0 and elapsed_s >= 0


def _index_response(objects):
    body, headers = encode_json({"objects": [o.to_dict() for o in objects]})
    return Response(200, {k.lower(): v for k, v in headers.items()}, body)


class IndexFetcher:
    def __init__(self, *answers):
        self.script = Script(*answers)

    def fetch(self, path):
        return self.script(path)


def test_index_is_checked_against_its_digest_and_retried():
    good = _index_response([WANT])
    flipped = bytearray(good.body)
    flipped[20] ^= 0x02
    corrupted = Response(200, good.headers, bytes(flipped))
    objects, attempts, _ms = fetch_index(IndexFetcher(corrupted, good), max_retries=1)
    assert objects == [WANT] and attempts == 2
    with pytest.raises(ProtocolError):
        fetch_index(IndexFetcher(corrupted, corrupted), max_retries=1)


@pytest.mark.parametrize("doc", [
    {"objects": []},
    {"objects": [{"name": "Bad Name", "version": 1, "size_bytes": 1, "sha256": "0" * 64}]},
    {"objects": [{"name": "a", "version": 0, "size_bytes": 1, "sha256": "0" * 64}]},
    {"objects": [{"name": "a", "version": 1, "size_bytes": True, "sha256": "0" * 64}]},
    {"objects": [{"name": "a", "version": 1, "size_bytes": 1, "sha256": "xyz"}]},
    ["not", "a", "mapping"],
])
def test_malformed_indexes_are_refused(doc):
    body, headers = encode_json(doc)
    with pytest.raises(ProtocolError):
        parse_index(Response(200, {k.lower(): v for k, v in headers.items()}, body))


def test_index_without_or_with_a_wrong_content_digest_is_refused():
    good = _index_response([WANT])
    with pytest.raises(ProtocolError):
        parse_index(Response(200, {}, good.body))
    with pytest.raises(ProtocolError):
        parse_index(Response(200, {H_CONTENT_SHA256: "0" * 64}, good.body))
    with pytest.raises(ProtocolError):
        parse_index(Response(500, good.headers, good.body))


def test_object_paths_round_trip_and_bad_ones_are_refused():
    assert parse_object_path(object_path("shard-00001", 3, "a" * 64)) == ("shard-00001", 3, "a" * 64)
    assert parse_object_path("/objects/x?version=2") == ("x", 2, None)
    for bad in ("/objects/x", "/objects/x?version=0", "/objects/x?version=1&version=2",
                "/objects/../etc?version=1", "/objects/X?version=1", "/index?version=1",
                "/objects/x?version=1&sha256=ABC", "/objects/x?version=-1"):
        with pytest.raises(ProtocolError):
            parse_object_path(bad)
