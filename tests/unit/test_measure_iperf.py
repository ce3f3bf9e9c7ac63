"""iperf3 runners: parsers on captured 3.12 JSON, argv, error JSON, server lifecycle."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.errors import EnvironmentProblem, InputError, ToolError
from testbed.measure import iperf as iperf_module
from testbed.measure.iperf import IperfServer, IperfTcpRunner, IperfUdpRunner

FIXTURES = Path(__file__).parent / "fixtures" / "measure"


def fixture(name):
    return (FIXTURES / name).read_text()


def doc(name):
    return json.loads(fixture(name))


def test_tcp_two_streams():
    raw = doc("iperf3_tcp.json")
    result = IperfTcpRunner().parse(fixture("iperf3_tcp.json"))
    assert result["throughput_mbps"] == raw["end"]["sum_received"]["bits_per_second"] / 1e6
    assert result["sender_mbps"] == raw["end"]["sum_sent"]["bits_per_second"] / 1e6
    assert result["retransmits"] == 48
    assert result["streams"] == 2
    assert result["bytes_received"] == 3308912640
    assert 13000 < result["throughput_mbps"] < 13500
    intervals = result["intervals"]
    assert len(intervals) == 4
    assert intervals[0]["start_s"] == 0.0
    for before, after in zip(intervals, intervals[1:]):
        assert after["start_s"] == pytest.approx(before["end_s"])
    assert intervals[0]["mbps"] == raw["intervals"][0]["sum"]["bits_per_second"] / 1e6


def test_tcp_single_stream_with_options():
    result = IperfTcpRunner().parse(fixture("iperf3_tcp_single.json"))
    assert result["streams"] == 1
    assert result["congestion"] == "cubic"
    assert result["mean_rtt_ms"] is not None and 0 < result["mean_rtt_ms"] < 5
    assert len(result["intervals"]) == 4


def test_udp_without_loss():
    raw = doc("iperf3_udp.json")
    result = IperfUdpRunner().parse(fixture("iperf3_udp.json"))
    # receiver goodput, not end.sum (which is the sender's rate in 3.12)
    assert result["throughput_mbps"] == raw["end"]["sum_received"]["bits_per_second"] / 1e6
    assert result["jitter_ms"] == pytest.approx(0.008515005978350134)
    assert result["loss_pct"] == 0.0
    assert result["packets"] == 41654
    assert result["out_of_order"] == 0
    assert result["streams"] == 1


def test_udp_with_loss_two_streams():
    result = IperfUdpRunner().parse(fixture("iperf3_udp_loss.json"))
    assert result["loss_pct"] == pytest.approx(4.67819404418828)
    assert result["lost_packets"] == 487 == 245 + 242
    assert result["packets"] == 10410
    assert result["streams"] == 2
    assert result["throughput_mbps"] < result["sender_mbps"]
    assert result["throughput_mbps"] == pytest.approx(95.2375620348635)


def test_udp_out_of_order_sums_all_streams():
    raw = doc("iperf3_udp_loss.json")
    raw["end"]["streams"][0]["udp"]["out_of_order"] = 3
    raw["end"]["streams"][1]["udp"]["out_of_order"] = 4
    assert IperfUdpRunner().parse(json.dumps(raw))["out_of_order"] == 7


@pytest.mark.parametrize("name, quote", [
    ("iperf3_error_refused.json", "unable to connect to server: Connection refused"),
    ("iperf3_error_timeout.json", "unable to connect to server: Connection timed out"),
    ("iperf3_error_congestion.json", "unable to set TCP_CONGESTION"),
    ("iperf3_server_error_addrinuse.json", "Address already in use"),
])
def test_error_documents_become_tool_errors_quoting_iperf3(name, quote):
    for runner in (IperfTcpRunner(), IperfUdpRunner()):
        with pytest.raises(ToolError, match="iperf3 reported an error: .*" + quote):
            runner.parse(fixture(name))


def test_non_json_and_incomplete_output():
    with pytest.raises(ToolError, match="not JSON.*iperf3: error"):
        IperfTcpRunner().parse("iperf3: error - unable to connect\n")
    with pytest.raises(ToolError, match="not JSON.*empty output"):
        IperfTcpRunner().parse("")
    raw = doc("iperf3_tcp.json")
    del raw["end"]["sum_received"]
    with pytest.raises(ToolError, match="lacks end.sum_received"):
        IperfTcpRunner().parse(json.dumps(raw))


def test_tcp_argv():
    assert IperfTcpRunner().argv("10.0.0.2", duration_s=3, streams=4, interval_s=0.5,
                                 port=5210, congestion="cubic", window_bytes=4194304,
                                 mss_bytes=1400) == [
        "iperf3", "-c", "10.0.0.2", "-J", "-p", "5210", "-t", "3", "-P", "4", "-i", "0.5",
        "--connect-timeout", "3000", "-C", "cubic", "-w", "4194304", "-M", "1400"]


def test_udp_argv():
    assert IperfUdpRunner().argv("10.0.0.2", bitrate_bps=250_000_000, length_bytes=1400,
                                 duration_s=2) == [
        "iperf3", "-c", "10.0.0.2", "-J", "-p", "5201", "-u", "-b", "250000000",
        "-l", "1400", "-t", "2", "-P", "1", "-i", "1", "--connect-timeout", "3000"]


def test_server_argv():
    assert IperfServer(node=None, port=5202).argv() == ["iperf3", "-s", "-1", "-J", "-p", "5202"]


class FakeNode:
    """Node stand-in: popen starts a harmless local process that plays the server."""

    def __init__(self, name, ip="10.9.0.2", client_output="", server_script=None):
        self.name, self.ip, self.netns = name, ip, "fake"
        self.client_output = client_output
        self.server_script = server_script or "import time; time.sleep(30)"
        self.started = []
        self.calls = []

    def popen(self, argv, **kwargs):
        proc = subprocess.Popen([sys.executable, "-c", self.server_script],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def run(self, argv, timeout_s, check=True, input_text=None):
        self.calls.append(list(argv))
        if argv[0] == "ss":
            pids = " ".join(f'users:(("iperf3",pid={p.pid},fd=3))' for p in self.started)
            return subprocess.CompletedProcess(argv, 0, pids, "")
        return subprocess.CompletedProcess(argv, 0, self.client_output, "")


@pytest.fixture
def tools_present(monkeypatch):
    monkeypatch.setattr(iperf_module, "require_tool", lambda tool, hint: "/usr/bin/" + tool)
    monkeypatch.setattr(iperf_module, "version_tuple", lambda name: (3, 12))


def test_run_kills_the_server_it_started_and_returns_the_result(tools_present):
    src = FakeNode("h1", client_output=fixture("iperf3_tcp.json"))
    # a server that finishes by itself shortly after the client, like iperf3 -s -1
    dst = FakeNode("h2", ip="10.201.0.2", server_script="import time; time.sleep(0.3)")
    result = IperfTcpRunner().run(src, dst, duration_s=2, streams=2, interval_s=0.5)
    assert result["retransmits"] == 48
    (server,) = dst.started
    assert server.poll() is not None  # reaped, not left behind
    assert src.calls[-1][:3] == ["iperf3", "-c", "10.201.0.2"]


def test_run_error_names_nodes_and_still_kills_server(tools_present):
    src = FakeNode("h1", client_output=fixture("iperf3_error_congestion.json"))
    dst = FakeNode("h2")
    with pytest.raises(ToolError) as info:
        IperfTcpRunner().run(src, dst, duration_s=1, congestion="nosuch")
    assert "iperf3 tcp h1 -> h2" in str(info.value)
    assert "TCP_CONGESTION" in str(info.value)
    assert dst.started[0].poll() is not None


def test_server_that_dies_at_start_reports_its_error(tools_present):
    path = FIXTURES / "iperf3_server_error_addrinuse.json"
    script = f"import sys; sys.stdout.write(open({str(path)!r}).read()); sys.exit(1)"
    src = FakeNode("h1")
    dst = FakeNode("h2", server_script=script)
    # ss shows nothing listening: the server died before it bound the port
    dst.run = lambda argv, timeout_s, check=True, input_text=None: subprocess.CompletedProcess(
        argv, 0, "", "")
    with pytest.raises(ToolError, match="server on h2 port 5201: .*Address already in use"):
        IperfUdpRunner().run(src, dst, duration_s=1)
    assert src.calls == []  # no client ran


class ScriptedClientNode(FakeNode):
    """A source node whose client runs print ``outputs`` in turn."""

    def __init__(self, name, outputs):
        super().__init__(name)
        self.outputs = list(outputs)

    def run(self, argv, timeout_s, check=True, input_text=None):
        self.calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, self.outputs.pop(0), "")


def _ss_for(node):
    def run(argv, timeout_s, check=True, input_text=None):
        pids = " ".join(f'users:(("iperf3",pid={p.pid},fd=3))' for p in node.started)
        return subprocess.CompletedProcess(argv, 0, pids, "")
    return run


def test_udp_setup_lost_on_a_lossy_path_is_started_again(tools_present):
    # iperf3_error_udp_setup_lost.json: iperf3 3.12's client document, recorded
    # with the server's namespace dropping every UDP datagram (30 s, then this)
    lost = fixture("iperf3_error_udp_setup_lost.json")
    src = ScriptedClientNode("h1", [lost, lost, fixture("iperf3_udp.json")])
    dst = FakeNode("h2")
    dst.run = _ss_for(dst)
    heard = []
    result = IperfUdpRunner().run(src, dst, duration_s=1, progress=heard.append)
    assert result["setup_attempts"] == 3
    assert len(src.calls) == 3 and len(dst.started) == 3  # a fresh server for every start
    assert all(p.poll() is not None for p in dst.started)
    assert len(heard) == 2 and "starting the test again (2 of 3)" in heard[0]
    assert "Resource temporarily unavailable" in heard[0]


def test_udp_setup_lost_every_time_is_an_error_and_other_errors_are_not_retried(tools_present):
    lost = fixture("iperf3_error_udp_setup_lost.json")
    src = ScriptedClientNode("h1", [lost] * 3)
    dst = FakeNode("h2")
    dst.run = _ss_for(dst)
    with pytest.raises(ToolError, match="iperf3 udp h1 -> h2.*unable to read from stream socket"):
        IperfUdpRunner().run(src, dst, duration_s=1)
    assert len(src.calls) == 3
    src = ScriptedClientNode("h1", [fixture("iperf3_error_refused.json")])
    dst = FakeNode("h2")
    dst.run = _ss_for(dst)
    with pytest.raises(ToolError, match="Connection refused"):
        IperfUdpRunner().run(src, dst, duration_s=1)
    assert len(src.calls) == 1


def test_udp_first_start_says_one_attempt(tools_present):
    src = ScriptedClientNode("h1", [fixture("iperf3_udp.json")])
    dst = FakeNode("h2")
    dst.run = _ss_for(dst)
    assert IperfUdpRunner().run(src, dst, duration_s=1)["setup_attempts"] == 1


def test_check_missing_iperf3(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(EnvironmentProblem) as info:
        IperfTcpRunner().check(FakeNode("h1"))
    assert info.value.hint == "apt-get install iperf3"


def test_check_too_old_iperf3(monkeypatch):
    monkeypatch.setattr(iperf_module, "require_tool", lambda tool, hint: "/usr/bin/" + tool)
    monkeypatch.setattr(iperf_module, "version_tuple", lambda name: (3, 1, 3))
    with pytest.raises(EnvironmentProblem, match="3.1.3 is too old"):
        IperfUdpRunner().check(FakeNode("h1"))


@pytest.mark.parametrize("runner, options", [
    (IperfTcpRunner(), {"duration_s": 0}),
    (IperfTcpRunner(), {"streams": 0}),
    (IperfTcpRunner(), {"window_bytes": -1}),
    (IperfUdpRunner(), {"bitrate_bps": 1.5e6}),
    (IperfUdpRunner(), {"length_bytes": 70000}),
])
def test_bad_options_are_rejected_before_any_process(runner, options):
    dst = FakeNode("h2")
    with pytest.raises(InputError):
        runner.run(FakeNode("h1"), dst, **options)
    assert dst.started == []
