"""The storage step between real namespaces (root only): cache benefit, corruption, versions, cleanup.

Labs (``lab_factory``, names ``it-st...``):

* ``pair`` with ``{"corrupt": "1%"}`` on its link: does link corruption reach
  the application, or does TCP's checksum drop it first? Oracles besides the
  step's own figures: the delay line's ``corrupted`` counters and the kernel's
  ``Tcp: InCsumErrors`` in each host's namespace (``/proc/net/snmp`` read
  with ``ip netns exec``). Whatever the answer, no read may be accepted
  unverified.
* ``two-clouds`` (two hosts per site, 10 ms on the direct link): origin in
  cw, reader gcp-h2, cache gcp-h1. Without and with the cache; then the
  origin's emulated silent corruption and new versions between epochs.

After every step, ``ip netns pids`` shows no process left in any host
namespace: the step stopped everything it started.

Each test prints one line of measured figures (run pytest with ``-s``).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import jsonschema
import pytest

from testbed.results import load_schema
from testbed.storage.options import load_options
from testbed.storage.step import run_storage

pytestmark = pytest.mark.integration

if shutil.which("ss") is None:
    pytest.skip("needs ss (iproute2) on PATH", allow_module_level=True)

CMD_TIMEOUT_S = 10


def _netns_pids(netns: str):
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                         timeout=CMD_TIMEOUT_S, check=True).stdout
    return out.split()


def _tcp_in_csum_errors(netns: str) -> int:
    """``Tcp: InCsumErrors`` of the namespace, from the kernel's own /proc/net/snmp."""
    out = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"], capture_output=True,
                         text=True, timeout=CMD_TIMEOUT_S, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("Tcp:")]
    header, values = rows[0], rows[1]
    return int(values[header.index("InCsumErrors")])


def _corrupted_packets(lab) -> int:
    return sum(int(q.get("corrupted") or 0) for doc in lab.delay_line_stats()
               for q in doc.get("queues", []))


def _assert_nothing_left(lab) -> None:
    for host in lab.hosts():
        assert _netns_pids(host.netns) == [], f"processes left in {host.netns}"


def _assert_every_read_verified(result: dict) -> None:
    schema = {"$defs": load_schema()["$defs"], "$ref": "#/$defs/storage"}
    jsonschema.validate(json.loads(json.dumps(result)), schema)  # what results.json will hold
    totals = result["totals"]
    assert totals["all_verified"], [e["failures"] for e in result["epochs"]]
    assert totals["stale_detected"] == 0
    for epoch in result["epochs"]:
        assert epoch["bytes_verified"] == result["dataset"]["dataset_bytes"]
        assert epoch["reads"] == result["dataset"]["shards"]


def _two_clouds(lab_factory, name: str):
    return lab_factory.create("two-clouds", name, params={"hosts_per_site": 2},
                              links={"direct": {"delay": "10ms"}})


def test_link_corruption_never_yields_an_unverified_read(lab_factory):
    lab = lab_factory.create("pair", "it-st-corrupt", links={"link": {"corrupt": "1%"}})
    h1, h2 = lab.node("h1"), lab.node("h2")
    csum_before = _tcp_in_csum_errors(h1.netns) + _tcp_in_csum_errors(h2.netns)
    options = load_options({"origin_site": "a", "cache": False, "shards": 64,
                            "shard_size_bytes": "256K", "epochs": 1, "max_retries": 5,
                            "timeout_s": 60})
    result = run_storage(lab, options)
    corrupted = _corrupted_packets(lab)
    csum_errors = _tcp_in_csum_errors(h1.netns) + _tcp_in_csum_errors(h2.netns) - csum_before
    epoch = result["epochs"][0]
    print(f"\n[storage corrupt link 1%] delay line corrupted {corrupted} packets; "
          f"kernel TCP InCsumErrors {csum_errors}; reads reaching the reader corrupted "
          f"{epoch['corrupt_detected_by_reader']}; retries {epoch['retries']}; "
          f"p50 {epoch['latency_p50_ms']:.2f} ms p99 {epoch['latency_p99_ms']:.2f} ms")
    assert corrupted > 0, "the delay line corrupted nothing: the test proves nothing"
    _assert_every_read_verified(result)
    assert epoch["corrupt_injected"] == 0  # the origin itself was clean
    # the corruption was caught somewhere: by a kernel checksum, or by the reader's digest
    assert csum_errors + epoch["corrupt_detected_by_reader"] > 0
    if epoch["corrupt_detected_by_reader"] == 0:
        # nothing reached the application: then the kernel dropped every corrupted packet
        # (the delay line's stats file may lag its last packets, never lead them)
        assert csum_errors >= corrupted, (csum_errors, corrupted)
    _assert_nothing_left(lab)


def test_regional_cache_serves_the_second_epoch_locally(lab_factory):
    lab = _two_clouds(lab_factory, "it-st-cache")
    base = {"origin_site": "cw", "readers": ["gcp-h2"], "shards": 32, "shard_size_bytes": "256K",
            "epochs": 2, "timeout_s": 60}
    direct = run_storage(lab, load_options({**base, "cache": False}))
    cached = run_storage(lab, load_options({**base, "cache": True}))
    no1, no2 = direct["epochs"]
    c1, c2 = cached["epochs"]
    print(f"\n[storage two-clouds 10ms] no cache p50 {no1['latency_p50_ms']:.2f}/"
          f"{no2['latency_p50_ms']:.2f} ms p99 {no2['latency_p99_ms']:.2f} ms "
          f"{no2['throughput_mbps']} Mbit/s; cache epoch 1 p50 {c1['latency_p50_ms']:.2f} ms "
          f"hit {c1['hit_ratio']}; epoch 2 p50 {c2['latency_p50_ms']:.2f} ms "
          f"p99 {c2['latency_p99_ms']:.2f} ms {c2['throughput_mbps']} Mbit/s hit {c2['hit_ratio']}; "
          f"origin egress epoch 2 {c2['origin_bytes_sent']} B")
    assert cached["caches"] == [{"host": "gcp-h1", "site": "gcp"}]
    assert direct["caches"] == [] and no2["hit_ratio"] is None
    _assert_every_read_verified(direct)
    _assert_every_read_verified(cached)
    assert c1["hit_ratio"] == 0.0
    assert c2["hit_ratio"] > 0.9
    assert c2["origin_bytes_sent"] == 0  # a hit needs no round trip to the origin
    assert c2["latency_p50_ms"] < no2["latency_p50_ms"] / 2, (c2["latency_p50_ms"], no2["latency_p50_ms"])
    assert no2["latency_p50_ms"] > 20.0  # one RTT over the 10 ms direct link at least
    _assert_nothing_left(lab)


def test_corrupt_origin_and_new_versions_through_the_cache(lab_factory):
    lab = _two_clouds(lab_factory, "it-st-verify")
    options = load_options({"origin_site": "cw", "readers": ["gcp-h2"], "shards": 32,
                            "shard_size_bytes": "64K", "epochs": 3, "updates_per_epoch": 4,
                            "corrupt_pct": 15, "max_retries": 10, "timeout_s": 60})
    result = run_storage(lab, options)
    epochs = result["epochs"]
    print("\n[storage two-clouds corrupt 15% + 4 new versions/epoch] " + "; ".join(
        f"epoch {e['epoch']}: injected {e['corrupt_injected']} detected {e['corrupt_detected']} "
        f"(cache {e['corrupt_detected_by_cache']}, reader {e['corrupt_detected_by_reader']}) "
        f"hits {e['cache_hits']} misses {e['cache_misses']} stale {e['stale_detected']}"
        for e in epochs))
    _assert_every_read_verified(result)
    assert result["totals"]["corrupt_injected"] > 0
    for e in epochs:
        assert e["corrupt_detected"] == e["corrupt_injected"], e
        assert e["retries"] >= e["corrupt_injected"]
    for e in epochs[1:]:
        # exactly the republished shards miss (new versions, fetched anew); the rest hit
        assert e["updated_shards"] == 4
        assert e["cache_misses"] == 4 and e["cache_hits"] == 28
    servers = result["servers"]
    assert servers["origin"]["published"] == 8
    assert servers["caches"]["gcp-h1"]["digest_mismatch"] == result["totals"]["corrupt_detected_by_cache"]
    _assert_nothing_left(lab)
