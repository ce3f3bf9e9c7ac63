"""Unit tests for the pure parts of testbed.shaping.htb: burst and leaf limits.

Numbers are worked by hand in the comments; no kernel is touched.
"""

from __future__ import annotations

import pytest

from testbed.profile import LinkProfile, QueueSpec
from testbed.shaping import htb
from testbed.shaping.htb import GSO_MAX_BYTES, host_gso_max_bytes, htb_burst_bytes, leaf_limit


def test_all_names_exist():
    for name in htb.__all__:
        assert hasattr(htb, name), name


def test_handles():
    assert (htb.ROOT, htb.CLASS, htb.LEAF) == (0x10000, 0x10001, 0x100000)  # 1: 1:1 10:


# ------------------------------------------------------------ htb burst


@pytest.mark.parametrize(
    "rate_bps,mtu,expected",
    [
        # 10 Gbit/s for 100 us = 10e9 / 8 * 1e-4 = 125,000 bytes > one frame
        (10_000_000_000, 1500, 125_000),
        # 1 Gbit/s for 100 us = 12,500 bytes > 9000 + 14
        (1_000_000_000, 9000, 12_500),
        # 200 Mbit/s (10 Gbit/s at scale 50) for 100 us = 2,500 bytes: one jumbo frame, 9,014
        (200_000_000, 9000, 9_014),
        # 100 Mbit/s for 100 us = 1,250 bytes < 1500 + 14
        (100_000_000, 1500, 1_514),
        # 5 Gbit/s for 100 us = 62,500 bytes
        (5_000_000_000, 1500, 62_500),
    ],
)
def test_htb_burst_bytes(rate_bps, mtu, expected):
    burst = htb_burst_bytes(rate_bps, mtu)
    assert burst == expected
    assert isinstance(burst, int)


@pytest.mark.parametrize(
    "rate_bps,mtu,expected",
    [
        (None, 1500, None),  # nothing shaped: GSO untouched
        # 10 Gbit/s: 125,000 bytes in 100 us >= 64 KiB: GSO untouched
        (10_000_000_000, 9000, None),
        # 5.3 Gbit/s: 65,536 bytes in 98.9 us... 5,242,880,000 bit/s x 1e-4 / 8 = 65,536: untouched
        (5_242_880_000, 9000, None),
        # 1 Gbit/s: 12,500 bytes in 100 us
        (1_000_000_000, 1500, 12_500),
        # 200 Mbit/s (scale 50): 2,500 bytes < one 9000-byte MTU: packets of one MTU
        (200_000_000, 9000, 9_000),
    ],
)
def test_host_gso_max_bytes(rate_bps, mtu, expected):
    # a GSO packet leaves htb at once when its tokens are >= 0: none may outlast 100 us of line time
    assert host_gso_max_bytes(rate_bps, mtu) == expected


# ------------------------------------------------------------ leaf limit


def _profile(**fields) -> LinkProfile:
    return LinkProfile(**fields)


def test_leaf_limit_bdp_large():
    # 1 Gbit/s x 40 ms RTT = 5,000,000 bytes; x 1.5 (default queue) = 7,500,000
    profile = _profile(rate_bps=1_000_000_000, delay_ms=20.0)
    assert leaf_limit(profile, 40.0, 1500) == ("bytes", 7_500_000)


def test_leaf_limit_bdp_floor_of_64_packets():
    # 100 Mbit/s x 2 ms = 25,000 bytes; x 1.5 = 37,500 < 64 x 9000 = 576,000
    # (> 2 x 65536 + 9000 = 140,072): the 64-packet floor wins
    profile = _profile(rate_bps=100_000_000, mtu=9000)
    assert leaf_limit(profile, 2.0, 9000) == ("bytes", 576_000)


def test_leaf_limit_small_bdp_raised_to_two_gso_packets():
    # 10 Mbit/s x 2 ms = 2,500 bytes; x 1.5 = 3,750; 64 x 1500 = 96,000;
    # two GSO super-packets + MTU = 2 x 65536 + 1500 = 132,572 wins
    profile = _profile(rate_bps=10_000_000)
    assert leaf_limit(profile, 2.0, 1500) == ("bytes", 132_572)


def test_leaf_limit_small_byte_queue_raised():
    # queue 10 KB = 10,000 bytes: a bfifo that small drops every 64 KB GSO
    # segment, so it becomes 2 x 65536 + 1500 = 132,572
    profile = _profile(rate_bps=100_000_000, queue=QueueSpec(kind="bytes", value=10_000))
    assert leaf_limit(profile, 20.0, 1500) == ("bytes", 132_572)


def test_leaf_limit_large_byte_queue_kept():
    profile = _profile(rate_bps=100_000_000, queue=QueueSpec(kind="bytes", value=1_048_576))
    assert leaf_limit(profile, 20.0, 1500) == ("bytes", 1_048_576)


def test_leaf_limit_packet_queue_untouched():
    # a packet-counted queue is the user's explicit choice: no byte floor
    profile = _profile(rate_bps=100_000_000, queue=QueueSpec(kind="packets", value=10))
    assert leaf_limit(profile, 20.0, 1500) == ("packets", 10)


def test_leaf_limit_unshaped_bdp_queue_is_1000_packets():
    assert leaf_limit(_profile(delay_ms=5.0), 10.0, 1500) == ("packets", 1000)


def test_leaf_limit_uses_the_given_rtt_not_the_profile_delay():
    # rate 1 Gbit/s, delay 1 ms, but the link RTT is 100 ms (asymmetric link):
    # 1e9 / 8 x 0.1 x 1.5 = 18,750,000 bytes
    profile = _profile(rate_bps=1_000_000_000, delay_ms=1.0)
    assert leaf_limit(profile, 100.0, 1500) == ("bytes", 18_750_000)


@pytest.mark.parametrize("mtu", [1500, 9000, 65535])
@pytest.mark.parametrize("size_bytes", [1, 1000, 65_536, 100_000])
def test_leaf_byte_limit_never_below_two_gso_packets_plus_mtu(mtu, size_bytes):
    profile = _profile(rate_bps=1_000_000, queue=QueueSpec(kind="bytes", value=size_bytes))
    kind, limit = leaf_limit(profile, 0.0, mtu)
    assert kind == "bytes"
    assert limit == max(size_bytes, 2 * GSO_MAX_BYTES + mtu)
