"""The Python delay line's reorder, without the kernel: netem's semantics.

A packet drawn for ``reorder_pct`` is sent at once (due at its arrival), so
it overtakes the packets held in the FIFO; the others keep their delay and
their order. Fake packets stand in for NFQUEUE's.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("netfilterqueue", reason="the Python line needs netfilterqueue")

from testbed.delayline.line import DelayLine  # noqa: E402


class _FakePacket:
    def get_timestamp(self) -> float:
        return 0.0  # no kernel timestamp: arrival is "now"


def test_reordered_packets_are_due_at_arrival_the_rest_after_the_delay(tmp_path):
    config = {"stats_path": str(tmp_path / "line.stats.json"), "queues": [
        {"queue_num": 1, "max_len": 100, "seed": 3,
         "profile": {"delay_ms": 10.0, "reorder_pct": 30.0}}]}
    line = DelayLine(config)
    queue = line.queues[0]
    on_packet = line._callback(queue)
    arrived = {}
    for _ in range(400):
        pkt = _FakePacket()
        before = time.monotonic()
        on_packet(pkt)
        arrived[pkt] = (before, time.monotonic())
    assert queue.counters["reordered"] == len(queue.side)
    assert len(queue.side) + len(queue.fifo) == 400
    assert 80 <= len(queue.side) <= 160  # 95 % binomial interval of 400 at 30 %: 102-138
    for due, _seq, pkt, _dup in queue.side:  # sent at once: due when it arrived
        before, after = arrived[pkt]
        assert before <= due <= after
    fifo_due = [item[0] for item in queue.fifo]
    assert fifo_due == sorted(fifo_due)  # the others keep their order ...
    for due, _seq, pkt, _dup in queue.fifo:  # ... and their delay
        before, _after = arrived[pkt]
        assert due >= before + 0.010
