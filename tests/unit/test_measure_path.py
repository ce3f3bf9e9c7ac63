"""PathRunner: probe classification on captured ping output, and the hop and
MTU searches against a simulated path built from those captures."""

import subprocess
from pathlib import Path

import pytest

from testbed.errors import EnvironmentProblem, InputError, ToolError
from testbed.measure import path as path_module
from testbed.measure.path import PathRunner

FIXTURES = Path(__file__).parent / "fixtures" / "measure"


def fixture(name):
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize("name, status, source, mtu", [
    ("ping_ttl_reached.txt", "reply", "10.201.3.2", None),
    ("ping_normal.txt", "reply", "10.201.0.2", None),
    ("ping_ttl_exceeded.txt", "ttl_exceeded", "10.201.2.2", None),
    ("ping_frag_needed.txt", "too_big", "10.201.2.2", 1300),
    ("ping_frag_needed_cached.txt", "too_big", None, 1300),
    ("ping_local_too_long.txt", "too_big", None, 1400),
    ("ping_unreachable.txt", "unreachable", "10.201.0.1", None),
    ("ping_timeout.txt", "no_answer", None, None),
])
def test_probe_classification(name, status, source, mtu):
    result = PathRunner().parse(fixture(name))
    assert (result["status"], result["from"], result["mtu"]) == (status, source, mtu)


def test_probe_without_statistics_is_a_tool_error():
    with pytest.raises(ToolError, match="Network is unreachable"):
        PathRunner().parse(fixture("ping_no_route.txt"))


def test_argv():
    runner = PathRunner()
    assert runner.argv("10.0.0.2", ttl=3) == [
        "ping", "-n", "-c", "1", "-W", "1", "-t", "3", "10.0.0.2"]
    assert runner.argv("10.0.0.2", mtu=1400, timeout_s=0.5) == [
        "ping", "-n", "-c", "1", "-W", "0.5", "-s", "1372", "-M", "do", "10.0.0.2"]


class SimulatedPath:
    """A source node on a path: routers, a path MTU, optional ICMP black hole.

    It answers ``ip -json route get``/``link show`` with captured JSON and
    each ping with the captured output that the real path would give.
    """

    def __init__(self, routers=("10.201.2.2",), path_mtu=1300,
                 link_mtu_fixture="ip_link_show_1500.json",
                 route_fixture="ip_route_get.json", black_hole=False, unreachable_at=None):
        self.name, self.ip, self.netns = "c", "10.201.2.1", "fake"
        self.routers, self.path_mtu = list(routers), path_mtu
        self.link_json = fixture(link_mtu_fixture)
        self.route_json = fixture(route_fixture)
        self.black_hole = black_hole
        self.unreachable_at = unreachable_at
        self.pings = []

    def _done(self, argv, stdout, code):
        return subprocess.CompletedProcess(argv, code, stdout, "")

    def run(self, argv, timeout_s, check=True, input_text=None):
        if argv[:3] == ["ip", "-json", "route"]:
            return self._done(argv, self.route_json, 0)
        if argv[:3] == ["ip", "-json", "link"]:
            return self._done(argv, self.link_json, 0)
        assert argv[0] == "ping" and timeout_s > 1
        self.pings.append(list(argv))
        if "-t" in argv:
            ttl = int(argv[argv.index("-t") + 1])
            if self.unreachable_at == ttl:
                return self._done(argv, fixture("ping_unreachable.txt"), 1)
            if ttl <= len(self.routers):
                text = fixture("ping_ttl_exceeded.txt")
                return self._done(argv, text.replace("10.201.2.2", self.routers[ttl - 1]), 1)
            return self._done(argv, fixture("ping_ttl_reached.txt"), 0)
        size = int(argv[argv.index("-s") + 1]) + 28
        if size <= self.path_mtu:
            return self._done(argv, fixture("ping_ttl_reached.txt"), 0)
        if self.black_hole:
            return self._done(argv, fixture("ping_timeout.txt"), 1)
        text = fixture("ping_frag_needed.txt").replace("1300", str(self.path_mtu))
        return self._done(argv, text, 1)


DST = type("Dst", (), {"name": "d", "ip": "10.201.3.2", "netns": "fake"})()


def test_two_hops_with_router_and_frag_needed():
    src = SimulatedPath()
    result = PathRunner().run(src, DST)
    assert result == {"ttl_hops": 2, "routers": ["10.201.2.2"], "path_mtu": 1300}
    mtu_probes = [p for p in src.pings if "-M" in p]
    # 1500 draws "mtu = 1300", then 1300 passes: two probes
    assert [int(p[p.index("-s") + 1]) for p in mtu_probes] == [1472, 1272]


def test_direct_link_is_one_hop_at_interface_mtu():
    src = SimulatedPath(routers=(), path_mtu=1400, link_mtu_fixture="ip_link_show.json")
    assert PathRunner().run(src, DST) == {"ttl_hops": 1, "routers": [], "path_mtu": 1400}
    assert len(src.pings) == 2


def test_cached_path_mtu_caps_the_search():
    src = SimulatedPath(path_mtu=1300, route_fixture="ip_route_get_cached_pmtu.json")
    assert PathRunner().path_mtu(src, DST) == {"path_mtu": 1300}
    assert [int(p[p.index("-s") + 1]) for p in src.pings] == [1272]


@pytest.mark.parametrize("true_mtu", [68, 576, 1234, 1499])
def test_black_hole_binary_search_finds_exact_mtu(true_mtu):
    src = SimulatedPath(path_mtu=true_mtu, black_hole=True)
    assert PathRunner().path_mtu(src, DST, attempts=1)["path_mtu"] == true_mtu
    assert len(src.pings) <= 13  # log2(1500 - 68) + verification


def test_silent_probe_is_retried_before_it_counts_as_too_big():
    src = SimulatedPath(path_mtu=1000, black_hole=True)
    PathRunner().path_mtu(src, DST, attempts=3)
    sizes = [int(p[p.index("-s") + 1]) for p in src.pings]
    assert sizes[:3] == [1472, 1472, 1472]


def test_silent_router_is_recorded_as_none():
    class Silent(SimulatedPath):
        def run(self, argv, timeout_s, check=True, input_text=None):
            if "-t" in argv and argv[argv.index("-t") + 1] == "2":
                self.pings.append(list(argv))
                return self._done(argv, fixture("ping_timeout.txt"), 1)
            return super().run(argv, timeout_s, check, input_text)

    src = Silent(routers=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    result = PathRunner().hops(src, DST, attempts=2)
    assert result == {"ttl_hops": 4, "routers": ["10.0.0.1", None, "10.0.0.3"]}


def test_unreachable_and_too_far_are_tool_errors():
    with pytest.raises(ToolError, match="Destination Host Unreachable.*TTL 2"):
        PathRunner().hops(SimulatedPath(unreachable_at=2), DST)
    with pytest.raises(ToolError, match="not reached within 3 hops"):
        PathRunner().hops(SimulatedPath(routers=("a", "b", "c", "d")), DST, max_hops=3)


def test_no_reply_even_to_smallest_probe():
    src = SimulatedPath(path_mtu=0, black_hole=True)
    with pytest.raises(ToolError, match="no reply even to a 68-byte probe"):
        PathRunner().path_mtu(src, DST, attempts=1)


@pytest.mark.parametrize("options", [{"max_hops": 0}, {"max_hops": 256}, {"attempts": 0},
                                     {"timeout_s": 0}])
def test_bad_options(options):
    src = SimulatedPath()
    with pytest.raises(InputError):
        PathRunner().run(src, DST, **options)
    assert src.pings == []


def test_check_missing_ping(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(EnvironmentProblem) as info:
        PathRunner().check(SimulatedPath())
    assert "iputils-ping" in info.value.hint


def test_overhead_constant():
    assert path_module.IPV4_ICMP_OVERHEAD_BYTES == 28
