"""OWD probe: payload format, analysis on hand-made arrivals, receiver output parsing."""

import json
import sys
from pathlib import Path

import pytest

from testbed.errors import InputError, ToolError
from testbed.measure import owd_probe
from testbed.measure.owd import OwdRunner
from testbed.measure.owd_probe import HEADER, analyze, decode_probe, encode_probe
from testbed.measure.stats import rfc3550_jitter, summarize

FIXTURES = Path(__file__).parent / "fixtures" / "measure"
MS = 1_000_000  # ns


def fixture(name):
    return (FIXTURES / name).read_text()


def test_probe_round_trip_and_padding():
    payload = encode_probe(7, 100, 123456789012, 64)
    assert len(payload) == 64
    assert payload[:4] == b"TBOW"
    assert decode_probe(payload) == (7, 100, 123456789012)


def test_probe_minimum_size_is_the_header():
    assert len(encode_probe(0, 1, 0, HEADER.size)) == HEADER.size == 20
    with pytest.raises(ValueError):
        encode_probe(0, 1, 0, HEADER.size - 1)


def test_foreign_payloads_are_not_probes():
    assert decode_probe(b"short") is None
    assert decode_probe(b"XXXX" + bytes(40)) is None


def test_analyze_exact_delays_loss_reordering_duplicates():
    # count 5; seq 4 lost, seq 1 arrives after seq 2, seq 3 arrives twice
    arrivals = [
        (0, 0 * MS, 0 * MS + 1 * MS),       # 1 ms
        (2, 20 * MS, 20 * MS + 3 * MS),     # 3 ms
        (1, 10 * MS, 10 * MS + 14 * MS),    # 14 ms, late: reordered
        (3, 30 * MS, 30 * MS + 2 * MS),     # 2 ms
        (3, 30 * MS, 30 * MS + 5 * MS),     # duplicate of 3
    ]
    result = analyze(arrivals, count=5)
    assert result["received"] == 4
    assert result["loss_pct"] == 20.0
    assert result["reordered"] == 1
    assert result["duplicates"] == 1
    assert result["samples_ms"] == [1.0, 3.0, 14.0, 2.0]
    assert [p["seq"] for p in result["packets"]] == [0, 2, 1, 3, 3]
    assert result["packets"][-1]["owd_ms"] == 5.0
    assert result["one_way_delay_ms"]["min"] == 1.0
    assert result["one_way_delay_ms"]["max"] == 14.0
    assert result["one_way_delay_ms"]["mean"] == 5.0
    # D = 2, 11, 12: J = 0.125; += (11 - 0.125)/16; += (12 - J)/16
    j = 0.0
    for d in (2, 11, 12):
        j += (d - j) / 16
    assert result["jitter_ms"] == pytest.approx(j)
    assert result["stdev_ms"] == result["one_way_delay_ms"]["stdev"]


def test_analyze_in_order_has_no_reordering():
    arrivals = [(i, i * MS, i * MS + MS // 2) for i in range(10)]
    result = analyze(arrivals, count=10)
    assert result["reordered"] == result["duplicates"] == 0
    assert result["loss_pct"] == 0.0
    assert result["jitter_ms"] == 0.0
    assert result["samples_ms"] == [0.5] * 10


def test_analyze_nothing_received():
    result = analyze([], count=3)
    assert result["loss_pct"] == 100.0
    assert result["one_way_delay_ms"]["count"] == 0
    assert result["jitter_ms"] is None


def test_parse_real_receiver_output():
    result = OwdRunner().parse(fixture("owd_recv_normal.txt"))
    assert result["count"] == result["received"] == 20
    assert result["loss_pct"] == 0.0
    assert result["reordered"] == 0
    samples = result["samples_ms"]
    assert len(samples) == 20 and all(0 < s < 5 for s in samples)
    # the receiver's summary agrees with an independent recomputation
    assert result["one_way_delay_ms"] == pytest.approx(summarize(samples))
    assert result["jitter_ms"] == pytest.approx(rfc3550_jitter(samples))
    assert [p["seq"] for p in result["packets"]] == list(range(20))


def test_parse_real_receiver_output_with_loss():
    result = OwdRunner().parse(fixture("owd_recv_loss.txt"))
    seqs = {p["seq"] for p in result["packets"]}
    assert result["received"] == len(seqs) == 15
    assert result["loss_pct"] == pytest.approx(100.0 * (20 - len(seqs)) / 20)
    assert result["one_way_delay_ms"]["count"] == 15


def test_parse_receiver_that_got_nothing():
    result = OwdRunner().parse(fixture("owd_recv_nothing.txt"))
    assert result["received"] == 0
    assert result["loss_pct"] == 100.0
    assert result["jitter_ms"] is None


def test_parse_rejects_missing_or_broken_output():
    with pytest.raises(ToolError, match="no result"):
        OwdRunner().parse("ready\n")
    with pytest.raises(ToolError, match="not JSON"):
        OwdRunner().parse("ready\n{broken\n")
    with pytest.raises(ToolError, match="lacks .*jitter_ms"):
        doc = json.loads(fixture("owd_recv_normal.txt").splitlines()[1])
        del doc["jitter_ms"]
        OwdRunner().parse("ready\n" + json.dumps(doc))


def test_sender_output_fixture_shape():
    doc = json.loads(fixture("owd_send.txt"))
    assert doc["sent"] == 3 and doc["send_errors"] == 0


def test_argv_for_both_roles():
    runner = OwdRunner()
    recv = runner.argv("recv", port=5301, count=10, interval_ms=5, bind_ip="10.0.0.2",
                       grace_ms=500, start_timeout_ms=2000)
    assert recv == [sys.executable, "-m", "testbed.measure.owd_probe", "recv",
                    "--port", "5301", "--count", "10", "--interval-ms", "5",
                    "--bind", "10.0.0.2", "--grace-ms", "500", "--start-timeout-ms", "2000",
                    "--stdin-eof"]
    send = runner.argv("send", port=5301, count=10, interval_ms=0.5, dst_ip="10.0.0.2",
                       size_bytes=100)
    assert send == [sys.executable, "-m", "testbed.measure.owd_probe", "send",
                    "--port", "5301", "--count", "10", "--interval-ms", "0.5",
                    "--dst", "10.0.0.2", "--size-bytes", "100"]
    with pytest.raises(ValueError):
        runner.argv("both", port=1, count=1, interval_ms=1)


def test_probe_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit) as info:
        owd_probe.main(["send", "--dst", "10.0.0.2", "--port", "5301", "--count", "1",
                        "--interval-ms", "1", "--size-bytes", "8"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        owd_probe.main(["recv", "--port", "0", "--count", "1", "--interval-ms", "1"])


class NoProcessNode:
    name, ip, netns = "h2", "10.0.0.2", "fake"

    def popen(self, *args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("no process may start for invalid options")


@pytest.mark.parametrize("options", [{"count": 0}, {"interval_ms": 0}, {"size_bytes": 19},
                                     {"port": 70000}, {"grace_ms": -1}])
def test_bad_options_are_rejected_before_any_process(options):
    with pytest.raises(InputError):
        OwdRunner().run(NoProcessNode(), NoProcessNode(), **options)


def test_receiver_stops_a_grace_period_after_stdin_closes():
    """--stdin-eof: the receiver waits for a slow sender as long as it is told (here 5
    minutes), but once its stdin closes (the sender finished) only grace-ms more."""
    import socket
    import subprocess
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    recv = subprocess.Popen(
        [sys.executable, "-m", "testbed.measure.owd_probe", "recv", "--port", str(port),
         "--count", "5", "--interval-ms", "10", "--bind", "127.0.0.1", "--grace-ms", "200",
         "--start-timeout-ms", "300000", "--stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        closed = time.monotonic()
        out, _ = recv.communicate(timeout=30)  # closes stdin
        assert time.monotonic() - closed < 10
        assert recv.returncode == 0 and '"received": 0' in out
        assert "receive_stamp" not in out  # no probe: no clock to name
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()


def test_kernel_receive_stamp_is_read_from_the_ancillary_data():
    import socket
    import struct

    from testbed.measure import owd_probe

    stamp = struct.pack("@qq", 1_700_000_000, 123_456_789)
    other = (socket.SOL_SOCKET, owd_probe.SO_TIMESTAMPNS + 1, b"\0" * 16)
    ours = (socket.SOL_SOCKET, owd_probe.SO_TIMESTAMPNS, stamp)
    assert owd_probe.kernel_stamp_ns([other, ours]) == 1_700_000_000_123_456_789
    assert owd_probe.kernel_stamp_ns([other]) is None
    assert owd_probe.kernel_stamp_ns([(socket.SOL_SOCKET, owd_probe.SO_TIMESTAMPNS, b"\0" * 8)]) is None


def test_kernel_stamp_moves_onto_the_monotonic_clock():
    """A packet the kernel stamped 3 ms ago is received 3 ms ago on the monotonic clock,
    however late the receiver read it; without a stamp the receiver's own time stands."""
    import socket
    import struct
    import time

    from testbed.measure import owd_probe

    three_ms_ago = time.clock_gettime_ns(time.CLOCK_REALTIME) - 3_000_000
    anc = [(socket.SOL_SOCKET, owd_probe.SO_TIMESTAMPNS,
            struct.pack("@qq", three_ms_ago // 1_000_000_000, three_ms_ago % 1_000_000_000))]
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    got, by_kernel = owd_probe.receive_time_ns(anc)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    assert by_kernel
    assert before - 3_000_000 - 1_000_000 <= got <= after - 3_000_000 + 1_000_000
    got, by_kernel = owd_probe.receive_time_ns([])
    assert not by_kernel and before <= got <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def test_clock_offset_ignores_a_reader_preempted_between_its_reads():
    """A reading whose monotonic bracket is wide (the receiver was preempted
    between the reads) must not move the offset: with it, a zero-delay probe
    arrived 0.045 ms before it was sent in CI."""
    import time

    from testbed.measure import owd_probe

    true_offset = 1_000_000_000_000
    state = {"mono": 5_000_000, "stall_ns": 0}

    def clock(kind):
        if kind == time.CLOCK_REALTIME:
            # the stall falls between the real-time read and the second monotonic read
            real = state["mono"] + true_offset
            state["mono"] += state["stall_ns"]
            state["stall_ns"] = 0
            return real
        state["mono"] += 100  # 0.1 us per read
        return state["mono"]

    offset = owd_probe.ClockOffset(calibrate_reads=4, clock=clock)
    assert abs(offset.offset_ns - true_offset) <= 100
    state["stall_ns"] = 66_000
    assert abs(offset.read() - true_offset) <= 100, "a 66 us stall moved the offset"
    # a clock step shows at the next tight reading
    true_offset += 7_000_000
    assert abs(offset.read() - true_offset) <= 100
