"""The C delay-line engine's kernel-free parts: scheduling core, verdict plan, glue.

No root, no kernel: ``_fastline.Scheduler`` is the FIFO/side-heap core the
packet loop uses, ``verdict_message`` builds the netlink bytes it sends, and
``fast`` turns a line config into engine settings and per-packet draws from
:mod:`testbed.delayline.sampling`.
"""

from __future__ import annotations

import math
import random
import struct

import pytest

from testbed.delayline import fast
from testbed.delayline.latehist import BINS, LatenessHistogram

_fastline = pytest.importorskip(
    "testbed.delayline._fastline", reason="C engine not built (pip install -e . needs gcc)")

MS = 1_000_000


# -- scheduling ------------------------------------------------------------------

def test_fifo_due_is_max_of_own_and_previous():
    s = _fastline.Scheduler()
    assert s.arrive(1, 0, 10 * MS) == 10 * MS
    # arrives later with a shorter delay: would overtake, held back to the previous due
    assert s.arrive(2, 1 * MS, 2 * MS) == 10 * MS
    assert s.arrive(3, 2 * MS, 20 * MS) == 22 * MS
    assert s.held() == 3
    assert s.head_due() == 10 * MS


def test_release_nothing_before_due_then_one_batch_for_the_prefix():
    s = _fastline.Scheduler()
    for pid in range(1, 6):
        s.arrive(pid, pid * MS, 10 * MS)
    ops, dues = s.release(10 * MS)
    assert ops == [] and dues == []
    ops, dues = s.release(13 * MS)
    assert ops == [("batch", 3)]
    assert dues == [11 * MS, 12 * MS, 13 * MS]
    assert s.held() == 2 and s.head_due() == 14 * MS


def test_release_respects_max_out():
    s = _fastline.Scheduler()
    for pid in range(1, 11):
        s.arrive(pid, 0, MS)
    ops, dues = s.release(MS, 4)
    assert ops == [("batch", 4)] and len(dues) == 4
    ops, dues = s.release(MS)
    assert ops == [("batch", 10)] and len(dues) == 6


def test_reordered_packet_skips_fifo_and_gets_single_verdict():
    s = _fastline.Scheduler()
    s.arrive(1, 0, 30 * MS)
    assert s.arrive(2, 0, 5 * MS, reorder=True) == 5 * MS
    s.arrive(3, 0, 1 * MS)  # FIFO: held behind packet 1
    ops, dues = s.release(5 * MS)
    assert ops == [("single", 2)] and dues == [5 * MS]
    ops, _ = s.release(30 * MS)
    assert ops == [("batch", 3)]


def test_no_batch_while_a_lower_id_is_held_in_the_side_heap():
    s = _fastline.Scheduler()
    s.arrive(1, 0, 50 * MS, reorder=True)  # held long, lower id
    s.arrive(2, 0, 1 * MS)
    s.arrive(3, 0, 1 * MS)
    ops, _ = s.release(2 * MS)
    # a batch up to 3 would also accept packet 1 early
    assert ops == [("single", 2), ("single", 3)]
    ops, _ = s.release(50 * MS)
    assert ops == [("single", 1)]


def test_payload_packet_breaks_the_batch_keeping_fifo_order():
    s = _fastline.Scheduler()
    s.arrive(1, 0, MS)
    s.arrive(2, 0, MS, payload=b"\x45abc")
    s.arrive(3, 0, MS)
    ops, _ = s.release(MS)
    assert ops == [("batch", 1), ("single", 2, b"\x45abc"), ("batch", 3)]


def test_batch_ids_wrap_around_2_to_the_32():
    s = _fastline.Scheduler()
    s.arrive(2**32 - 1, 0, 10 * MS, reorder=True)  # "lower" than 1 modulo 2^32
    s.arrive(1, 0, MS)
    ops, _ = s.release(MS)
    assert ops == [("single", 1)]


def test_side_heap_releases_by_due_time():
    s = _fastline.Scheduler()
    rng = random.Random(7)
    delays = [rng.randrange(1, 1000) * 1000 for _ in range(500)]
    for pid, d in enumerate(delays, 1):
        s.arrive(pid, 0, d, reorder=True)
    _, dues = s.release(10**9)
    assert dues == sorted(delays)
    assert s.held() == 0 and s.held_max() == 500


def test_fifo_random_never_reorders_and_never_early():
    s = _fastline.Scheduler()
    rng = random.Random(3)
    released, t = [], 0
    expected_due = {}
    last = 0
    for pid in range(1, 3001):
        t += rng.randrange(0, 200_000)
        delay = max(0, int(rng.gauss(5 * MS, 2 * MS)))
        due = s.arrive(pid, t, delay)
        assert due == max(t + delay, last)
        last = due
        expected_due[pid] = due
        if pid % 7 == 0:
            ops, dues = s.release(t)
            assert all(d <= t for d in dues)
            released.extend(op[1] for op in ops)
    ops, _ = s.release(10**12)
    released.extend(op[1] for op in ops)
    # batch ids rise strictly: the FIFO is released in arrival order
    assert released == sorted(released) and released[-1] == 3000


# -- lateness bins, corruption, netlink bytes -----------------------------------------

@pytest.mark.parametrize("late_s", [0.0, 5e-7, 1e-6, 3.3e-6, 1e-4, 0.0123, 2.5, 1e6])
def test_late_bin_matches_python_histogram(late_s):
    py = LatenessHistogram()
    py.add(late_s)
    assert _fastline.late_bin(int(round(late_s * 1e9))) == py.counts.index(1)
    assert _fastline.LATE_BINS == BINS


def test_corrupt_flips_exactly_one_bit_past_the_ip_header():
    pkt = bytes([0x45]) + bytes(19) + bytes(range(40))
    for aux in (0, 1, 12345, 2**32 - 1, 0xDEADBEEF):
        out = _fastline.corrupt(pkt, aux)
        diff = [i for i in range(len(pkt)) if pkt[i] != out[i]]
        assert len(diff) == 1 and diff[0] >= 20
        assert bin(pkt[diff[0]] ^ out[diff[0]]).count("1") == 1


def test_corrupt_leaves_header_only_packet_alone():
    pkt = bytes([0x45]) + bytes(19)
    assert _fastline.corrupt(pkt, 99) == pkt


def test_verdict_message_layout():
    msg = _fastline.verdict_message(3, 0x01020304, accept=True, batch=True)
    length, mtype, flags, _seq, _pid = struct.unpack_from("=IHHII", msg, 0)
    assert length == len(msg) == 16 + 4 + 12
    assert mtype == (3 << 8) | 3  # NFNL_SUBSYS_QUEUE, NFQNL_MSG_VERDICT_BATCH
    assert flags & 1  # NLM_F_REQUEST
    family, version, res_id = struct.unpack_from("!BBH", msg, 16)
    assert (version, res_id) == (0, 3)
    alen, atype = struct.unpack_from("=HH", msg, 20)
    verdict, pid = struct.unpack_from("!II", msg, 24)
    assert (alen, atype, verdict, pid) == (12, 2, 1, 0x01020304)  # NFQA_VERDICT_HDR, NF_ACCEPT


def test_verdict_message_with_payload_and_drop():
    msg = _fastline.verdict_message(1, 9, accept=False, payload=b"abcde")
    assert struct.unpack_from("=H", msg, 4)[0] == (3 << 8) | 1  # NFQNL_MSG_VERDICT
    assert struct.unpack_from("!I", msg, 24)[0] == 0  # NF_DROP
    alen, atype = struct.unpack_from("=HH", msg, 32)
    assert (alen, atype) == (4 + 5, 10)  # NFQA_PAYLOAD
    assert msg[36:41] == b"abcde" and len(msg) % 4 == 0


# -- glue: engine settings and model draws ---------------------------------------

def _qcfg(**profile) -> dict:
    return {"queue_num": 2, "max_len": 5000, "seed": 11, "profile": profile}


def test_engine_config_constant_queue():
    cfg = fast.engine_queue_config(_qcfg(delay_ms=40.0))
    assert cfg == {"queue_num": 2, "max_len": 5000, "gso": 1, "copy_payload": 0,
                   "const_mode": 1, "delay_ns": 40_000_000}


@pytest.mark.parametrize("profile, const, gso, copy", [
    (dict(delay_ms=5, jitter_ms=1), 0, 1, 0),
    (dict(delay_ms=5, loss_pct=1), 0, 0, 0),
    (dict(delay_ms=5, corrupt_pct=1), 0, 0, 1),
    (dict(delay_ms=5, reorder_pct=5), 0, 1, 0),
])
def test_engine_config_random_queues(profile, const, gso, copy):
    cfg = fast.engine_queue_config(_qcfg(**profile))
    assert (cfg["const_mode"], cfg["gso"], cfg["copy_payload"]) == (const, gso, copy)


def test_engine_config_gso_can_be_forced_and_duplicate_is_refused():
    cfg = fast.engine_queue_config({**_qcfg(delay_ms=5, loss_pct=1), "gso": True})
    assert cfg["gso"] == 1
    with pytest.raises(ValueError, match="duplicate"):
        fast.engine_queue_config(_qcfg(delay_ms=5, duplicate_pct=1))


def test_feeder_loss_rate_within_binomial_interval():
    n = 200_000
    delays, flags, aux = fast.ModelFeeder(_qcfg(delay_ms=5, loss_pct=2.0)).draw(n)
    assert len(delays) == len(flags) == len(aux) == n
    lost = sum(1 for f in flags if f & _fastline.FLAG_LOSE)
    half = 1.96 * math.sqrt(n * 0.02 * 0.98)
    assert abs(lost - n * 0.02) < half * 1.5, (lost, n * 0.02, half)
    kept = [d for d, f in zip(delays, flags) if not f & _fastline.FLAG_LOSE]
    assert set(kept) == {5_000_000}


def test_feeder_jitter_matches_sampling_stream():
    """Same seed and draw order as the Python line: identical delays."""
    from testbed.delayline.line import QueueState

    qcfg = _qcfg(delay_ms=10, jitter_ms=2, correlation_pct=25)
    delays, flags, _ = fast.ModelFeeder(qcfg).draw(1000)
    ref = QueueState(qcfg)
    expected = []
    for _ in range(1000):
        ref.lose()
        ref.duplicate()
        ref.corrupt()
        expected.append(int(ref.delay.sample() * 1e6))
        ref.reorder()
    assert list(delays) == expected
    assert not any(flags)
    sd = (sum((d / 1e6 - 10) ** 2 for d in delays) / len(delays)) ** 0.5
    assert 1.7 < sd < 2.3


def test_feeder_reorder_and_corrupt_flags():
    n = 50_000
    _, flags, aux = fast.ModelFeeder(_qcfg(delay_ms=1, reorder_pct=10, corrupt_pct=5)).draw(n)
    reordered = sum(1 for f in flags if f & _fastline.FLAG_REORDER) / n
    corrupted = [a for f, a in zip(flags, aux) if f & _fastline.FLAG_CORRUPT]
    assert 0.09 < reordered < 0.11
    assert 0.045 < len(corrupted) / n < 0.055
    assert len(set(corrupted)) > len(corrupted) * 0.99  # positions drawn, not constant


def test_engine_rejects_bad_settings_without_kernel():
    with pytest.raises(ValueError):
        _fastline.Engine([])
    with pytest.raises(ValueError):
        _fastline.Engine([{"queue_num": 70000}])
    with pytest.raises(ValueError):
        _fastline.Engine([{"queue_num": 1}], feed_size=1000)


def test_engine_feed_ring_push_and_level():
    eng = _fastline.Engine([{"queue_num": 1, "const_mode": 0, "delay_ns": 0}], feed_size=1024)
    from array import array
    taken = eng.push(0, array("q", [1] * 1000), array("B", [0] * 1000), array("I", [0] * 1000))
    assert taken == 1000
    assert eng.feed_level(0) == (1000, 1024)
    taken = eng.push(0, array("q", [1] * 100), array("B", [0] * 100), array("I", [0] * 100))
    assert taken == 24  # full
    with pytest.raises(ValueError):
        eng.push(0, array("q", [1]), array("B", [0, 0]), array("I", [0]))
    stats = eng.stats()
    assert stats["queues"][0]["received"] == 0 and len(stats["queues"][0]["late_counts"]) == BINS + 1


def test_feeder_reordered_packets_skip_the_delay():
    """netem's reorder: the reordered share is sent at once (delay 0), the rest keep theirs."""
    n = 20_000
    delays, flags, _ = fast.ModelFeeder(_qcfg(delay_ms=10, reorder_pct=10)).draw(n)
    reordered = [d for d, f in zip(delays, flags) if f & _fastline.FLAG_REORDER]
    kept = [d for d, f in zip(delays, flags) if not f & _fastline.FLAG_REORDER]
    assert reordered and set(reordered) == {0}
    assert set(kept) == {10_000_000}
