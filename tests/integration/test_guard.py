"""The root-namespace guard: nothing from the root namespace reaches a lab, nothing is left.

While a lab is up the root namespace has chain ``TB-<lab>``. Exactly one ping
packet is sent from the root namespace to an address inside the lab's block,
and only after ``iptables -S`` showed that the first OUTPUT rule matching
that address jumps to the lab's chain, which drops it (and that no nat
OUTPUT rule could rewrite the destination first): the packet is dropped on
this machine before it reaches any interface. The ping must fail and the
chain's counter (``iptables -L TB-<lab> -v -x -n``) rise by exactly one,
while lab traffic between the lab's own hosts still flows. The root
namespace's addresses, routes and iptables rules must be identical before
``Lab.create`` and after ``destroy()``.

Other users' labs (chains ``TB-<name>`` not starting with ``TB-it-``) may come
and go meanwhile; their rules are left out of the comparison.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

import helpers

pytestmark = pytest.mark.integration

LAB = "it-guard"
CHAIN = f"TB-{LAB}"


def _not_ours(chain: str) -> bool:
    return not chain.startswith(f"TB-{helpers.IT_PREFIX}")


def _first_output_rule_for(address: str) -> str:
    """The first root OUTPUT rule whose destination covers ``address`` (or none)."""
    ip = ipaddress.IPv4Address(address)
    for rule in helpers.iptables_rules():
        if not rule.startswith("-A OUTPUT"):
            continue
        match = re.search(r" -d (\S+)", rule)
        if match is None or ip in ipaddress.IPv4Network(match.group(1), strict=False):
            return rule
    return ""


def _require_guard_drops(address: str, block: str) -> None:
    """Fail (sending nothing) unless the guard is certain to drop a packet to ``address``."""
    rules = helpers.iptables_rules()
    assert "-P OUTPUT ACCEPT" in rules or "-P OUTPUT DROP" in rules, rules
    first = _first_output_rule_for(address)
    assert first.endswith(f"-j {CHAIN}"), (
        f"first OUTPUT rule for {address} is {first!r}, not a jump to {CHAIN}: refusing to send")
    drop = [r for r in rules if r.startswith(f"-A {CHAIN} ") and r.endswith("-j DROP")]
    assert drop and f" -d {block} " in drop[0] + " ", (
        f"{CHAIN} does not start by dropping {block}: {drop}")
    first_in_chain = [r for r in rules if r.startswith(f"-A {CHAIN} ")][0]
    assert first_in_chain == drop[0], f"{CHAIN} starts with {first_in_chain!r}"
    nat_output = [r for r in helpers.iptables_rules(table="nat") if r.startswith("-A OUTPUT")]
    assert not nat_output, f"nat OUTPUT rules could rewrite the destination: {nat_output}"


def test_guard_blocks_root_namespace_and_root_is_left_untouched(lab_factory):
    before = helpers.root_snapshot(_not_ours)
    lab = lab_factory.create("pair", name=LAB, links={"link": {"delay": "1ms"}})
    h1, h2 = lab.node("h1"), lab.node("h2")
    block = lab.block
    assert ipaddress.IPv4Address(h2.ip) in ipaddress.IPv4Network(block)

    rules = helpers.iptables_rules()
    assert f"-N {CHAIN}" in rules, f"no guard chain {CHAIN} in the root namespace"
    assert f"-A OUTPUT -d {block} -j {CHAIN}" in rules
    assert f"-A FORWARD -d {block} -j {CHAIN}" in rules

    _require_guard_drops(h2.ip, block)
    dropped_before = helpers.iptables_chain_packets(CHAIN)
    # exactly ONE packet, from the root namespace, dropped by the guard on this machine
    ping = helpers.run_cmd(["ping", "-n", "-c", "1", "-W", "1", h2.ip], timeout_s=10,
                           check=False)
    dropped_after = helpers.iptables_chain_packets(CHAIN)
    assert ping.returncode != 0, f"root namespace reached the lab: {ping.stdout}"
    assert dropped_after - dropped_before == 1, (
        f"guard counter went {dropped_before} -> {dropped_after}, expected +1")
    assert lab.status()["guard_dropped_packets"] == dropped_after

    # the lab's own traffic is untouched by the guard
    reply = h1.run(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", h2.ip], timeout_s=15)
    assert " 0% packet loss" in reply.stdout, reply.stdout
    assert helpers.iptables_chain_packets(CHAIN) == dropped_after

    lab.destroy()
    lab_factory.forget(lab)
    after = helpers.root_snapshot(_not_ours)
    assert f"-N {CHAIN}" not in helpers.iptables_rules()
    differences = helpers.diff_snapshots(before, after)
    assert not differences, "root namespace changed:\n" + "\n".join(differences)
