"""PingRunner: parser on captured iputils output, argv, run() error paths."""

import re
import subprocess
from pathlib import Path

import pytest

from testbed.errors import EnvironmentProblem, InputError, ToolError
from testbed.measure import ping as ping_module
from testbed.measure.ping import PingRunner, parse_ping_output, ping_argv

FIXTURES = Path(__file__).parent / "fixtures" / "measure"


def fixture(name):
    return (FIXTURES / name).read_text()


def ping_summary_line(text):
    """ping's own 'rtt min/avg/max/mdev' figures: an independent oracle."""
    match = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", text)
    return tuple(float(x) for x in match.groups())


class FakeNode:
    """Stands in for testbed.lab.node.Node: answers run() with canned output."""

    def __init__(self, stdout="", stderr="", returncode=0, name="h1", ip="10.9.0.1"):
        self.name, self.ip, self.netns = name, ip, "fake"
        self.result = (stdout, stderr, returncode)
        self.calls = []

    def run(self, argv, timeout_s, check=True, input_text=None):
        self.calls.append((list(argv), timeout_s))
        stdout, stderr, code = self.result
        return subprocess.CompletedProcess(argv, code, stdout, stderr)


def test_normal_run_matches_pings_own_summary():
    text = fixture("ping_normal.txt")
    result = PingRunner().parse(text)
    rtt_min, rtt_avg, rtt_max, mdev = ping_summary_line(text)
    assert result["sent"] == result["received"] == 20
    assert result["loss_pct"] == 0.0
    assert len(result["samples_ms"]) == 20
    assert result["rtt_ms"]["count"] == 20
    assert result["rtt_ms"]["min"] == rtt_min
    assert result["rtt_ms"]["max"] == rtt_max
    assert result["rtt_ms"]["mean"] == pytest.approx(rtt_avg, abs=0.0006)
    assert result["rtt_ms"]["stdev"] == pytest.approx(mdev, abs=0.0011)
    assert result["errors"] == []


def test_run_with_ten_percent_loss():
    text = fixture("ping_loss.txt")
    result = PingRunner().parse(text)
    assert result["sent"] == 100
    assert result["received"] == 90
    assert result["loss_pct"] == 10.0
    assert len(result["samples_ms"]) == 90
    assert result["rtt_ms"]["min"] == ping_summary_line(text)[0]


def test_payload_size_lines_are_parsed():
    result = PingRunner().parse(fixture("ping_size1000.txt"))
    assert result["received"] == 10
    assert len(result["samples_ms"]) == 10


def test_silent_destination_gives_full_loss_and_no_rtt():
    result = PingRunner().parse(fixture("ping_timeout.txt"))
    assert result["sent"] == 3
    assert result["received"] == 0
    assert result["loss_pct"] == 100.0
    assert result["rtt_ms"]["count"] == 0
    assert result["rtt_ms"]["mean"] is None


def test_unreachable_host_errors_are_collected():
    out = parse_ping_output(fixture("ping_unreachable.txt"))
    assert out.sent == 6 and out.received == 0
    assert out.error_count == 6
    assert [e.seq for e in out.errors] == [1, 2, 3, 4, 5, 6]
    assert {e.message for e in out.errors} == {"Destination Host Unreachable"}
    assert {e.from_addr for e in out.errors} == {"10.201.0.1"}


def test_icmp_and_local_errors_carry_the_mtu():
    frag = parse_ping_output(fixture("ping_frag_needed.txt")).errors
    assert [(e.from_addr, e.mtu) for e in frag] == [("10.201.2.2", 1300)]
    local = parse_ping_output(fixture("ping_local_too_long.txt")).errors
    assert [(e.from_addr, e.mtu) for e in local] == [(None, 1400)]
    ttl = parse_ping_output(fixture("ping_ttl_exceeded.txt")).errors
    assert [(e.from_addr, e.message, e.mtu) for e in ttl] == [
        ("10.201.2.2", "Time to live exceeded", None)
    ]


def test_duplicates_are_counted_but_not_sampled():
    text = (
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.100 ms\n"
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.300 ms (DUP!)\n"
        "64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.200 ms\n"
        "2 packets transmitted, 2 received, +1 duplicates, 0% packet loss, time 1001ms\n"
    )
    result = PingRunner().parse(text)
    assert result["samples_ms"] == [0.1, 0.2]
    assert result["duplicates"] == 1


def test_fractional_loss_is_kept():
    text = "3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms\n"
    assert PingRunner().parse(text)["loss_pct"] == pytest.approx(33.3333)


def test_output_without_statistics_is_a_tool_error():
    with pytest.raises(ToolError, match="Network is unreachable"):
        PingRunner().parse(fixture("ping_no_route.txt"))
    with pytest.raises(ToolError, match="no statistics"):
        PingRunner().parse("something else entirely\n")


def test_argv():
    assert PingRunner().argv("10.0.0.2", count=5, interval_s=0.05, timeout_s=2,
                             size_bytes=1000) == [
        "ping", "-n", "-c", "5", "-i", "0.05", "-W", "2", "-s", "1000", "10.0.0.2"]
    assert PingRunner().argv("10.0.0.2") == [
        "ping", "-n", "-c", "10", "-i", "0.2", "-W", "1", "10.0.0.2"]
    assert ping_argv("10.0.0.2", ttl=3, size_bytes=1372, dont_fragment=True) == [
        "ping", "-n", "-c", "1", "-W", "1", "-s", "1372", "-t", "3", "-M", "do", "10.0.0.2"]


def test_run_returns_parsed_result_and_bounds_the_wait():
    src = FakeNode(stdout=fixture("ping_loss.txt"), returncode=0)
    dst = FakeNode(name="h2", ip="10.201.0.2")
    result = PingRunner().run(src, dst, count=100, interval_s=0.01)
    assert result["loss_pct"] == 10.0
    argv, timeout_s = src.calls[0]
    assert argv[-1] == "10.201.0.2"
    assert 1.0 < timeout_s < 60


def test_run_with_no_reply_is_a_tool_error_naming_nodes_and_cause():
    src = FakeNode(stdout=fixture("ping_unreachable.txt"), returncode=1)
    with pytest.raises(ToolError) as info:
        PingRunner().run(src, FakeNode(name="h2", ip="10.201.0.99"), count=6)
    message = str(info.value)
    assert "h1 -> h2" in message and "10.201.0.99" in message
    assert "Destination Host Unreachable" in message


def test_run_exit_code_2_quotes_stderr():
    src = FakeNode(stderr=fixture("ping_no_route.txt"), returncode=2)
    with pytest.raises(ToolError, match="exited 2: ping: connect: Network is unreachable"):
        PingRunner().run(src, FakeNode(name="h2"), count=1)


@pytest.mark.parametrize("options", [{"count": 0}, {"interval_s": 0}, {"interval_s": "1"},
                                     {"timeout_s": -1}, {"size_bytes": 0}])
def test_bad_options_are_rejected_before_running(options):
    src = FakeNode()
    with pytest.raises(InputError):
        PingRunner().run(src, FakeNode(name="h2"), **options)
    assert src.calls == []


def test_destination_without_address_is_rejected():
    with pytest.raises(InputError, match="h2 has no address"):
        PingRunner().run(FakeNode(), FakeNode(name="h2", ip=None))


def test_check_reports_missing_tool_with_hint(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(EnvironmentProblem) as info:
        PingRunner().check(FakeNode())
    assert info.value.hint == "apt-get install iputils-ping"


def test_module_exports_exist():
    for name in ping_module.__all__:
        assert hasattr(ping_module, name)
