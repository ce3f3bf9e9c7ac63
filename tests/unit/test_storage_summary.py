"""Per-epoch and total figures from reader documents and server counters; the process helpers."""

import json
import subprocess
import sys
import time

import pytest

from testbed.errors import ToolError
from testbed.storage.services import Service, decode_json_line, run_parallel
from testbed.storage.summary import counter_delta, summarize_epoch, summarize_totals


def _reader(**overrides):
    doc = {"reader": "r", "epoch": 1, "via_cache": True, "elapsed_s": 0.5, "reads": 4,
           "failed_reads": 0, "attempts": 5, "retries": 1, "bytes_fetched": 5000,
           "bytes_verified": 4000, "cache_hits": 3, "cache_misses": 1, "corrupt_detected": 1,
           "corrupt_rejected_upstream": 0, "stale_detected": 0, "errors": 0,
           "latencies_ms": [1.0, 2.0, 3.0, 10.0], "failures": []}
    doc.update(overrides)
    return doc


def test_counter_delta_takes_only_integer_counters():
    assert counter_delta({"a": 1, "b": 2, "role": "x", "f": 0.5, "t": True},
                         {"a": 4, "b": 2, "role": "x", "f": 1.5, "t": True, "new": 3}) == {"a": 3, "b": 0}


def test_epoch_figures():
    readers = [_reader(), _reader(elapsed_s=1.0, latencies_ms=[4.0, 5.0, 6.0, 7.0])]
    e = summarize_epoch(2, readers, {"corrupted_responses": 3, "bytes_sent": 9000, "objects_served": 9},
                        [{"digest_mismatch": 1, "evictions": 2}], updated_shards=1)
    assert e["epoch"] == 2 and e["readers"] == 2 and e["reads"] == 8
    assert e["latency_ms"]["count"] == 8
    assert e["latency_p50_ms"] == pytest.approx(4.5)
    assert e["throughput_mbps"] == pytest.approx(8000 * 8 / 1.0 / 1e6)  # the slowest reader's time
    assert e["hit_ratio"] == 0.75
    assert e["corrupt_injected"] == 3
    assert e["corrupt_detected_by_reader"] == 2 and e["corrupt_detected_by_cache"] == 1
    assert e["corrupt_detected"] == 3
    assert e["retries"] == 2 and e["bytes_fetched"] == 10000
    assert e["origin_bytes_sent"] == 9000 and e["cache_evictions"] == 2 and e["updated_shards"] == 1
    json.dumps(e)


def test_no_cache_means_no_hit_ratio_and_empty_epochs_have_no_latency():
    e = summarize_epoch(1, [_reader(via_cache=False, cache_hits=0, cache_misses=0)], {}, [])
    assert e["hit_ratio"] is None
    empty = summarize_epoch(1, [], {}, [])
    assert empty["latency_p50_ms"] is None and empty["throughput_mbps"] is None


def test_totals_sum_epochs_and_judge_all_reads():
    one = summarize_epoch(1, [_reader(cache_hits=0, cache_misses=4)], {}, [])
    two = summarize_epoch(2, [_reader(cache_hits=4, cache_misses=0, failed_reads=1)], {}, [])
    totals = summarize_totals([one, two], [1.0, 2.0, 3.0, 10.0] * 2)
    assert totals["epochs"] == 2 and totals["reads"] == 8
    assert totals["hit_ratio"] == 0.5
    assert totals["latency_ms"]["count"] == 8
    assert totals["throughput_mbps"] == pytest.approx(8000 * 8 / 1.0 / 1e6)
    assert totals["all_verified"] is False


def test_decode_json_line():
    assert decode_json_line("noise\n{\"a\": 1}\n\n", "x") == {"a": 1}
    for bad in ("", "not json", "[1, 2]"):
        with pytest.raises(ToolError):
            decode_json_line(bad, "x")


class LocalNode:
    """Runs commands here instead of in a namespace (no traffic is involved)."""

    name = "local"

    def popen(self, argv, **kwargs):
        return subprocess.Popen(list(argv), **kwargs)

    def run(self, argv, timeout_s, check=True):
        return subprocess.CompletedProcess(argv, 0, stdout="", stderr="")  # nothing listens


PY = sys.executable


def test_run_parallel_collects_each_document_in_order():
    jobs = [(f"job{i}", LocalNode(), [PY, "-c", f"print('{{\"i\": {i}}}')"]) for i in range(3)]
    assert run_parallel(jobs, timeout_s=20) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_run_parallel_stops_everything_at_the_deadline():
    jobs = [("fast", LocalNode(), [PY, "-c", "print('{}')"]),
            ("slow", LocalNode(), [PY, "-c", "import time; time.sleep(60)"])]
    start = time.monotonic()
    with pytest.raises(ToolError, match="slow on local did not finish within 1 s"):
        run_parallel(jobs, timeout_s=1)
    assert time.monotonic() - start < 10


def test_run_parallel_reports_a_failed_job_with_its_stderr():
    jobs = [("bad", LocalNode(), [PY, "-c", "import sys; sys.exit('it broke')"])]
    with pytest.raises(ToolError, match="bad on local exited 1: it broke"):
        run_parallel(jobs, timeout_s=20)


def test_service_that_exits_before_listening_is_reported_with_its_stderr():
    svc = Service(LocalNode(), [PY, "-c", "import sys; sys.exit('port in use')"], 8470, "origin")
    with pytest.raises(ToolError, match="exited 1 before listening on port 8470: port in use"):
        svc.start()
    assert svc.proc.poll() is not None


def test_service_stuck_before_listening_is_stopped_by_pid():
    # asleep, no CPU used, not listening: stuck (no fixed deadline, a progress check)
    svc = Service(LocalNode(), [PY, "-c", "import time; time.sleep(60)"], 8470, "origin")
    with pytest.raises(ToolError, match=r"origin on local \(port 8470\) did not start: no progress"):
        svc.start(stall_s=1.0)
    assert svc.proc.returncode is not None  # stopped and reaped
    svc.stop()  # twice is fine
