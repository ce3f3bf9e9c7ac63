"""The netem backend's netlink requests, checked without a kernel.

Oracles, independent of the code under test:

* bytes that iproute2's ``tc`` (6.1.0) sent to the kernel for the same
  settings, captured with ``strace -e trace=sendmsg -e write=3`` (the kernel
  here has no netem, so the request was refused after being sent);
* a small TLV walker below (plain ``struct``), not pyroute2, for the bytes;
* pyroute2's own stock ``tcmsg`` decoder for the fields it knows;
* SHA-256 of iproute2's shipped ``normal.dist`` / ``pareto.dist`` /
  ``paretonormal.dist`` tables (Debian iproute2 6.1.0-3, 4096 values each,
  packed as little-endian s16);
* values worked by hand in the comments.
"""

from __future__ import annotations

import errno
import hashlib
import struct
from pathlib import Path

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from testbed.errors import InputError, KernelError
from testbed.profile import LinkProfile
from testbed.shaping import netem
from testbed.shaping.netem import (
    FIFO_RATE_BYTES_PER_S,
    NetemBackend,
    NetemQdiscMsg,
    distribution_table,
    ms_to_ns,
    netem_needed,
    netem_qdisc_msg,
    netem_request,
    ns_to_ticks,
    percent_to_u32,
)

# `tc qdisc add dev tbn-p0 parent 1:1 handle 10: netem limit 777 delay 20ms 5ms 25%
#  loss gemodel 1% 25% 100% 0% duplicate 1% corrupt 0.1% reorder 2% gap 1`
TC_GEMODEL_HEX = (
    "8c00000024000506b3ac066b0000000000000000030000000000100001000100000000000a000100"
    "6e6574656d0000005c000200b4c40400090300000000000001000000295c8f022d31010010000100"
    "0000004000000000000000000c00030052b81e05000000000c000400378941000000000018000580"
    "14000200295c8f02000000400000000000000000"
)
# `tc qdisc add dev tbn-p0 root handle 1: netem limit 1000 delay 15ms loss random 0.1%`
TC_RANDOM_HEX = (
    "4c00000024000506b3ac066b00000000000000000300000000000100ffffffff000000000a000100"
    "6e6574656d0000001c00020087930300e803000037894100000000000000000000000000"
)
IPROUTE2_TABLE_SHA256 = {
    "normal": "ea496767068d0be9eb46cb69ee90470105525b9090a6d479dadf04db0f3d44a5",
    "pareto": "bb133e76721f7df4fd75dd647aad368fa8e9eaf9b9797fc8d208dde5f9ffbd2a",
    "paretonormal": "ca372e5f4871aa11f38e71c82bd18e074e068f0704291e8a859ebd1aaee2f9f1",
}
# first four, four from the middle (index 2048) and last four of each iproute2 table
IPROUTE2_TABLE_SPOTS = {
    "normal": ([-32768, -28307, -26871, -25967], [0, 5, 11, 16], [25450, 26164, 27159, 28858]),
    "pareto": ([-5461, -5460, -5460, -5459], [-2622, -2620, -2618, -2616], [32767] * 4),
    "paretonormal": (
        [-12305, -11171, -10812, -10586],
        [-1966, -1963, -1960, -1958],
        [30937, 31116, 31365, 31789],
    ),
}
TC_LIB_DIRS = (Path("/usr/lib/x86_64-linux-gnu/tc"), Path("/usr/lib/tc"), Path("/usr/lib64/tc"))

# TCA_* and TCA_NETEM_* attribute numbers (linux/rtnetlink.h, linux/pkt_sched.h)
TCA_KIND, TCA_OPTIONS = 1, 2
CORR, DELAY_DIST, REORDER, CORRUPT, LOSS, RATE = 1, 2, 3, 4, 5, 6
RATE64, LATENCY64, JITTER64 = 8, 10, 11
NLA_F_NESTED = 0x8000
NETEM_LOSS_GE = 2
QOPT_BYTES = 24  # struct tc_netem_qopt: six u32
CREATE_FLAGS = 0x0605  # NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE


# ---------------------------------------------------------------- helpers


def tlvs(data: bytes) -> dict:
    """{nla_type (flags kept): payload} of a run of netlink attributes."""
    out = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("<HH", data, offset)
        if length < 4:
            raise ValueError(f"bad attribute length {length} at {offset}")
        if kind in out:
            raise ValueError(f"attribute {kind} twice")
        out[kind] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def split_request(data: bytes):
    """(nlmsghdr fields, tcmsg fields, top attributes, qopt bytes, netem attributes)."""
    length, msg_type, flags, _seq, _pid = struct.unpack_from("<IHHII", data, 0)
    if length != len(data):
        raise ValueError(f"nlmsg_len {length} != {len(data)} bytes")
    family, _pad1, _pad2, index, handle, parent, info = struct.unpack_from("<BBHiIII", data, 16)
    top = tlvs(data[36:])
    options = top[TCA_OPTIONS]
    return (
        (msg_type, flags),
        (family, index, handle, parent, info),
        top,
        options[:QOPT_BYTES],
        tlvs(options[QOPT_BYTES:]),
    )


def qopt(raw: bytes) -> dict:
    keys = ("latency", "limit", "loss", "gap", "duplicate", "jitter")
    return dict(zip(keys, struct.unpack("<6I", raw)))


class FakeIPRoute:
    """Records requests; answers like pyroute2 (empty ack) or raises ``error``."""

    def __init__(self, error=None, ifname="veth-a", lazy=False):
        self.calls = []
        self.error = error
        self.ifname = ifname
        self.lazy = lazy
        self.status = {"ext_ack": False}

    def nlm_request(self, msg, msg_type, msg_flags):
        self.calls.append((msg, msg_type, msg_flags))
        if self.lazy:  # like pyroute2 with nlm_generator: errors come while iterating
            return self._responses()
        if self.error is not None:
            raise self.error
        return ()

    def _responses(self):
        if self.error is not None:
            raise self.error
        yield from ()

    def get_links(self, index):
        return [FakeLink(index, self.ifname)]


class FakeLink(dict):
    """Enough of pyroute2's ifinfmsg for a name lookup."""

    def __init__(self, index, ifname):
        super().__init__(index=index)
        self.ifname = ifname

    def get_attr(self, name):
        return self.ifname if name == "IFLA_IFNAME" else None


def encoded(msg, msg_type=36, flags=CREATE_FLAGS) -> bytes:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg.encode()
    return bytes(msg.data)


def applied_bytes(profile, limit_pkts=1000, parent=None, handle=0x10000, ifindex=3) -> bytes:
    ipr = FakeIPRoute()
    NetemBackend().apply(ipr, ifindex, parent, handle, profile, limit_pkts)
    assert len(ipr.calls) == 1
    msg, msg_type, flags = ipr.calls[0]
    return encoded(msg, msg_type, flags)


GEMODEL_PROFILE = LinkProfile(
    delay_ms=20,
    jitter_ms=5,
    correlation_pct=25,
    jitter_distribution="uniform",
    loss_model="gilbert-elliott",
    loss_pct=100 / 26,  # with a 4-packet burst: r = 0.25, p = L r / (1 - L) = 0.01
    loss_burst_pkts=4,
    duplicate_pct=1,
    corrupt_pct=0.1,
    reorder_pct=2,
)


# ---------------------------------------------------------------- units


def test_unit_conversions_hand_worked():
    assert percent_to_u32(0) == 0
    assert percent_to_u32(100) == 0xFFFFFFFF
    assert percent_to_u32(0.1) == 4294967  # 4294967.295
    assert percent_to_u32(1) == 42949673  # 42949672.95
    assert percent_to_u32(25) == 1073741824  # 1073741823.75
    assert ms_to_ns(20) == 20_000_000
    assert ms_to_ns(0.25) == 250_000
    assert ns_to_ticks(20_000_000) == 312_500  # 64 ns ticks
    assert ns_to_ticks(1_000) == 15  # 15.625 truncated, like the kernel's >> 6
    assert ns_to_ticks(2**40) == 0xFFFFFFFF  # saturates


@pytest.mark.parametrize("bad", [-0.1, 100.5, float("nan"), float("inf")])
def test_percent_out_of_range_is_input_error(bad):
    with pytest.raises(InputError) as info:
        percent_to_u32(bad, "loss")
    assert info.value.field == "loss"


# ---------------------------------------------------------------- request values


def test_plain_delay_and_random_loss_request():
    options = netem_request(LinkProfile(delay_ms=15, loss_pct=0.1), 1000)
    attrs = dict((name, value) for name, value in options["attrs"])
    assert {k: v for k, v in options.items() if k != "attrs"} == {
        "delay": 234_375,  # 15 ms = 15e6 ns / 64
        "limit": 1000,
        "loss": 4_294_967,  # 0.1 %
        "gap": 0,
        "duplicate": 0,
        "jitter": 0,
    }
    assert attrs == {"TCA_NETEM_LATENCY64": 15_000_000, "TCA_NETEM_JITTER64": 0}


def test_gilbert_elliott_hand_worked():
    # loss 1 %, mean burst 4: r = 1/4, p = 0.01 * 0.25 / 0.99 = 0.0025252525...
    profile = LinkProfile(delay_ms=1, loss_pct=1, loss_model="gilbert-elliott")
    options = netem_request(profile, 100)
    attrs = dict((name, value) for name, value in options["attrs"])
    assert options["loss"] == 0  # the random-loss field stays off
    assert attrs["TCA_NETEM_LOSS"] == {
        "attrs": [["NETEM_LOSS_GE", {"p": 10_845_877, "r": 1_073_741_824, "h": 0, "k1": 0}]]
    }


def test_jitter_adds_fifo_rate_correlation_and_table():
    profile = LinkProfile(delay_ms=10, jitter_ms=2, correlation_pct=50)
    attrs = dict((name, value) for name, value in netem_request(profile, 500)["attrs"])
    assert attrs["TCA_NETEM_RATE"]["rate"] == 0xFFFFFFFF
    assert attrs["TCA_NETEM_RATE64"] == FIFO_RATE_BYTES_PER_S == 10**12
    assert attrs["TCA_NETEM_CORR"] == {"delay_corr": 2_147_483_648, "loss_corr": 0, "dup_corr": 0}
    assert attrs["TCA_NETEM_DELAY_DIST"] == distribution_table("normal")
    assert attrs["TCA_NETEM_JITTER64"] == 2_000_000


def test_no_jitter_means_no_rate_no_table_no_correlation():
    profile = LinkProfile(delay_ms=10, jitter_distribution="pareto")
    names = [name for name, _value in netem_request(profile, 500)["attrs"]]
    assert names == ["TCA_NETEM_LATENCY64", "TCA_NETEM_JITTER64"]


def test_uniform_jitter_sends_no_table_but_keeps_fifo_rate():
    profile = LinkProfile(delay_ms=10, jitter_ms=2, jitter_distribution="uniform")
    names = [name for name, _value in netem_request(profile, 500)["attrs"]]
    assert "TCA_NETEM_DELAY_DIST" not in names
    assert {"TCA_NETEM_RATE", "TCA_NETEM_RATE64"} <= set(names)


def test_reorder_duplicate_corrupt():
    profile = LinkProfile(delay_ms=5, reorder_pct=25, duplicate_pct=1, corrupt_pct=0.1)
    options = netem_request(profile, 64)
    attrs = dict((name, value) for name, value in options["attrs"])
    assert options["gap"] == 1
    assert options["duplicate"] == 42_949_673
    assert attrs["TCA_NETEM_REORDER"] == {"prob_reorder": 1_073_741_824, "corr_reorder": 0}
    assert attrs["TCA_NETEM_CORRUPT"] == {"prob_corrupt": 4_294_967, "corr_corrupt": 0}


@pytest.mark.parametrize("limit", [0, -1, 2**32, 1.5, True])
def test_bad_limit_is_rejected(limit):
    with pytest.raises(InputError):
        netem_request(LinkProfile(delay_ms=1), limit)


def test_duck_typed_profile_is_checked_too():
    class Loose:
        delay_ms = 0.0
        jitter_ms = 3000.0  # beyond netem's INT_MAX ns
        jitter_distribution = "normal"
        correlation_pct = 0.0
        loss_pct = 0.0
        loss_model = "random"
        duplicate_pct = corrupt_pct = reorder_pct = 0.0

    with pytest.raises(InputError) as info:
        netem_request(Loose(), 10)
    assert info.value.field == "jitter"
    Loose.jitter_ms, Loose.jitter_distribution = 1.0, "gaussian"
    with pytest.raises(InputError) as info:
        netem_request(Loose(), 10)
    assert info.value.field == "jitter_distribution"
    Loose.jitter_distribution, Loose.reorder_pct = "normal", 5.0
    with pytest.raises(InputError) as info:
        netem_request(Loose(), 10)  # reorder without delay
    assert info.value.field == "reorder"


def test_netem_needed():
    assert not netem_needed(LinkProfile(rate_bps=10**9))
    assert netem_needed(LinkProfile(rate_bps=10**9, loss_pct=0.01))
    assert netem_needed(LinkProfile(delay_ms=0.1))


# ---------------------------------------------------------------- bytes on the wire


def test_apply_sends_one_create_request_decodable_by_stock_pyroute2():
    data = applied_bytes(LinkProfile(delay_ms=15, loss_pct=0.1), 1000, None, 0x10000, 3)
    msg = tcmsg(data)
    msg.decode()
    assert msg["header"]["type"] == 36  # RTM_NEWQDISC
    assert msg["header"]["flags"] == CREATE_FLAGS
    assert (msg["index"], msg["handle"], msg["parent"]) == (3, 0x10000, 0xFFFFFFFF)
    assert msg.get_attr("TCA_KIND") == "netem"
    options = msg.get_attr("TCA_OPTIONS")
    assert options["delay"] == 234_375
    assert options["limit"] == 1000
    assert options["loss"] == 4_294_967
    assert options["jitter"] == 0


def test_random_loss_request_matches_tc_bytes():
    ours = split_request(applied_bytes(LinkProfile(delay_ms=15, loss_pct=0.1), 1000))
    theirs = split_request(bytes.fromhex(TC_RANDOM_HEX))
    assert ours[0] == theirs[0]  # type, flags
    assert ours[1] == theirs[1]  # family, ifindex 3, handle 1:, parent root, info
    assert ours[2][TCA_KIND] == theirs[2][TCA_KIND] == b"netem\x00"
    assert ours[3] == theirs[3]  # struct tc_netem_qopt, byte for byte
    assert theirs[4] == {}
    assert ours[4] == {
        LATENCY64: struct.pack("<q", 15_000_000),
        JITTER64: struct.pack("<q", 0),
    }


def test_gemodel_request_matches_tc_bytes():
    ours = split_request(applied_bytes(GEMODEL_PROFILE, 777, parent=0x10001, handle=0x100000))
    theirs = split_request(bytes.fromhex(TC_GEMODEL_HEX))
    assert ours[0] == theirs[0]
    assert ours[1] == theirs[1] == (0, 3, 0x100000, 0x10001, 0)
    assert ours[3] == theirs[3]
    assert qopt(ours[3]) == {
        "latency": 312_500,
        "limit": 777,
        "loss": 0,
        "gap": 1,
        "duplicate": 42_949_673,
        "jitter": 78_125,
    }
    # every attribute tc sent, we send identically (CORR, REORDER, CORRUPT, LOSS)
    assert set(theirs[4]) == {CORR, REORDER, CORRUPT, LOSS | NLA_F_NESTED}
    for kind, payload in theirs[4].items():
        assert ours[4][kind] == payload, f"attribute {kind:#x} differs"
    assert tlvs(ours[4][LOSS | NLA_F_NESTED]) == {
        NETEM_LOSS_GE: struct.pack("<4I", 42_949_673, 1_073_741_824, 0, 0)
    }
    # and what tc 6.1 does not send: the FIFO rate and the exact 64-bit times
    extras = {kind: ours[4][kind] for kind in set(ours[4]) - set(theirs[4])}
    assert extras == {
        RATE: struct.pack("<IiIi", 0xFFFFFFFF, 0, 0, 0),
        RATE64: struct.pack("<Q", 10**12),
        LATENCY64: struct.pack("<q", 20_000_000),
        JITTER64: struct.pack("<q", 5_000_000),
    }


def test_our_decoder_reads_tc_bytes():
    msg = NetemQdiscMsg(bytes.fromhex(TC_GEMODEL_HEX))
    msg.decode()
    options = msg.get_attr("TCA_OPTIONS")
    assert options["delay"] == 312_500 and options["limit"] == 777
    loss = options.get_attr("TCA_NETEM_LOSS")
    assert loss.get_attr("NETEM_LOSS_GE")["p"] == 42_949_673
    assert options.get_attr("TCA_NETEM_REORDER")["prob_reorder"] == 85_899_346  # 2 %


@pytest.mark.parametrize("name", ["normal", "pareto", "paretonormal"])
def test_distribution_table_on_the_wire(name):
    profile = LinkProfile(delay_ms=30, jitter_ms=10, jitter_distribution=name)
    netem_attrs = split_request(applied_bytes(profile))[4]
    payload = netem_attrs[DELAY_DIST]
    assert len(payload) == 4096 * 2  # nla_len 8196: 4096 s16 samples
    samples = struct.unpack("<4096h", payload)
    assert hashlib.sha256(payload).hexdigest() == IPROUTE2_TABLE_SHA256[name]
    first, middle, last = IPROUTE2_TABLE_SPOTS[name]
    assert list(samples[:4]) == first
    assert list(samples[2048:2052]) == middle
    assert list(samples[-4:]) == last


@pytest.mark.parametrize("name", ["normal", "pareto", "paretonormal"])
def test_distribution_table_matches_installed_iproute2_file(name):
    path = next((d / f"{name}.dist" for d in TC_LIB_DIRS if (d / f"{name}.dist").exists()), None)
    if path is None:
        pytest.skip(f"iproute2's {name}.dist is not installed here")
    values = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            values.extend(int(v) for v in line.split())
    assert distribution_table(name) == tuple(values)


def test_uniform_has_no_table():
    assert distribution_table("uniform") == ()
    with pytest.raises(InputError):
        distribution_table("exponential")


def test_root_versus_htb_leaf_parent():
    profile = LinkProfile(delay_ms=1)
    root = split_request(applied_bytes(profile, parent=None, handle=0x10000))[1]
    leaf = split_request(applied_bytes(profile, parent=0x10001, handle=0x100000))[1]
    assert root[2:4] == (0x10000, 0xFFFFFFFF)
    assert leaf[2:4] == (0x100000, 0x10001)


def test_message_builder_alone():
    msg = netem_qdisc_msg(9, None, 0x20000, netem_request(LinkProfile(delay_ms=2), 50))
    header, tc_fields, top, raw_qopt, attrs = split_request(encoded(msg))
    assert tc_fields == (0, 9, 0x20000, 0xFFFFFFFF, 0)
    assert qopt(raw_qopt)["latency"] == 31_250
    assert attrs[LATENCY64] == struct.pack("<q", 2_000_000)


# ---------------------------------------------------------------- errors and plumbing


def test_netlink_error_becomes_kernel_error_naming_the_interface():
    cause = NetlinkError(errno.ENOENT)
    ipr = FakeIPRoute(error=cause, ifname="tb1-h1-eth0")
    with pytest.raises(KernelError) as info:
        NetemBackend().apply(ipr, 7, 0x10001, 0x100000, LinkProfile(delay_ms=5), 100)
    assert info.value.errno == errno.ENOENT
    assert info.value.__cause__ is cause
    text = str(info.value)
    assert "tb1-h1-eth0 (ifindex 7)" in text
    assert "parent 1:1" in text
    assert "No such file or directory" in text


def test_error_raised_while_draining_responses_is_translated():
    ipr = FakeIPRoute(error=NetlinkError(errno.EINVAL, "Invalid qdisc name"), lazy=True)
    with pytest.raises(KernelError) as info:
        NetemBackend().apply(ipr, 4, None, 0x10000, LinkProfile(delay_ms=5), 100)
    assert info.value.errno == errno.EINVAL
    assert "Invalid qdisc name" in str(info.value)
    assert "root" in str(info.value)


def test_missing_nlm_generator_status_gets_pyroute2_default():
    ipr = FakeIPRoute()
    NetemBackend().apply(ipr, 4, None, 0x10000, LinkProfile(delay_ms=5), 100)
    assert ipr.status["nlm_generator"] is False


def test_available_without_root_says_why(monkeypatch):
    monkeypatch.setattr(netem.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netem, "_availability", {})
    ok, reason = NetemBackend().available()
    assert ok is False
    assert "root" in reason


def test_available_is_cached_per_process(monkeypatch):
    calls = []

    def fake_probe():
        calls.append(1)
        return True, "fake"

    monkeypatch.setattr(netem, "_availability", {})
    monkeypatch.setattr(netem, "_probe_in_scratch_namespace", fake_probe)
    backend = NetemBackend()
    assert backend.available() == (True, "fake")
    assert NetemBackend().available() == (True, "fake")
    assert len(calls) == 1


def test_public_surface():
    for name in netem.__all__:
        assert hasattr(netem, name), name
    assert NetemBackend.name == "netem"
