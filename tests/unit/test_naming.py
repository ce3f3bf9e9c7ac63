"""Unit tests for testbed.lab.naming: names of lab objects and their rules."""

from __future__ import annotations

import pytest

from testbed.errors import InputError
from testbed.lab import naming
from testbed.lab.naming import (
    IFNAME_MAX,
    NETNS_PREFIX,
    check_lab_name,
    check_node_name,
    guard_chain,
    intf_name,
    lab_of_netns,
    netns_name,
    wire_netns,
)


def test_all_names_exist():
    for name in naming.__all__:
        assert hasattr(naming, name), name


# ------------------------------------------------------------- lab names


@pytest.mark.parametrize("name", ["lab1", "a", "0", "unit-x", "a" * 16, "9-lives", "x--y"])
def test_good_lab_names(name):
    assert check_lab_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a" * 17, "-lab", "Lab1", "lab.1", "lab_1", "lab 1", "läb", None, 7, "lab/1"]
)
def test_bad_lab_names(name):
    with pytest.raises(InputError) as info:
        check_lab_name(name, "run.lab")
    assert info.value.field == "run.lab"
    assert info.value.exit_code == 2


# ------------------------------------------------------------ node names


def test_node_name_limit_is_what_fits_an_interface_name():
    # "<node>-eth99" must fit 15 characters: 15 - len("-eth99") = 9
    assert naming.NODE_NAME_MAX == 9
    longest = "n" * 9
    assert check_node_name(longest) == longest
    assert len(intf_name(longest, 99)) == IFNAME_MAX


@pytest.mark.parametrize("name", ["h1", "cw-h1", "gcp-r1", "tr16", "H", "abcdefghi"])
def test_good_node_names(name):
    assert check_node_name(name) == name


@pytest.mark.parametrize(
    "name", ["abcdefghij", "a" * 20, "1h", "-h", "_w0", "h_1", "h.1", "h 1", "", None]
)
def test_bad_node_names_name_the_field(name):
    with pytest.raises(InputError) as info:
        check_node_name(name, f"nodes.{name}")
    assert info.value.field == f"nodes.{name}"


def test_long_node_name_message_says_why():
    with pytest.raises(InputError) as info:
        check_node_name("a" * 20, "nodes.x")
    assert "20 characters" in info.value.message
    assert "15" in info.value.message


# --------------------------------------------------------- object names


def test_netns_and_wire_names():
    assert netns_name("lab1", "h1") == "tb.lab1.h1"
    assert wire_netns("lab1", 3) == "tb.lab1._w3"
    assert NETNS_PREFIX == "tb."


def test_wire_name_cannot_clash_with_a_node():
    # wires start with '_', which no valid node name may
    with pytest.raises(InputError):
        check_node_name("_w0")


def test_one_labs_prefix_never_matches_another_lab():
    prefix = f"{NETNS_PREFIX}lab."
    for other in (netns_name("lab1", "h1"), netns_name("lab-2", "h1"), wire_netns("labx", 0)):
        assert not other.startswith(prefix), other


@pytest.mark.parametrize(
    "netns,lab",
    [
        ("tb.lab1.h1", "lab1"),
        ("tb.unit-x._w0", "unit-x"),
        ("tb.lab1.cw-h1", "lab1"),
        ("tbt.a", None),  # someone else's namespace
        ("tbn-netem-123", None),
        ("tb.lab1", None),  # no node part
        ("tb.lab1.", None),
        ("tb.Lab1.h1", None),  # not a valid lab name
        ("tb..h1", None),
        ("lab1.h1", None),
        ("", None),
    ],
)
def test_lab_of_netns(netns, lab):
    assert lab_of_netns(netns) == lab


def test_lab_of_netns_inverts_netns_name():
    for lab in ("a", "lab1", "unit-cli", "x" * 16):
        for node in ("h1", "cw-r1"):
            assert lab_of_netns(netns_name(lab, node)) == lab
        assert lab_of_netns(wire_netns(lab, 12)) == lab


def test_intf_names():
    assert intf_name("h1", 0) == "h1-eth0"
    assert intf_name("gcp-r1", 12) == "gcp-r1-eth12"


def test_intf_name_over_15_characters_rejected():
    with pytest.raises(InputError):
        intf_name("abcdefghi", 100)  # "abcdefghi-eth100" is 16 characters


def test_guard_chain():
    assert guard_chain("lab1") == "TB-lab1"
    # iptables chain names may have at most 28 characters
    assert len(guard_chain("x" * 16)) <= 28


def test_lab_name_with_trailing_newline_rejected():
    with pytest.raises(InputError):
        check_lab_name("lab1\n")


def test_node_name_with_trailing_newline_rejected():
    with pytest.raises(InputError):
        check_node_name("h1\n")
