"""The root-namespace guard: nothing addressed to a lab leaves the machine.

While a lab is up, the root namespace has a chain ``TB-<lab>`` that drops and
counts every packet addressed to the lab's block, hooked into OUTPUT (sent by
root-namespace processes) and FORWARD (routed through the root namespace). The
lab itself never touches the root namespace (its bridges live in lab-owned
namespaces), so the guard cannot drop lab traffic; it only catches commands
that went to the wrong place, and ``testbed status`` shows the count.
"""

from __future__ import annotations

import subprocess
from typing import List, Optional

from testbed.lab.kcmd import kernel_cmd
from testbed.lab.naming import guard_chain

__all__ = ["install", "remove", "dropped", "chains"]

HOOKS = ("OUTPUT", "FORWARD")


def _iptables(args: List[str], check: bool = True) -> subprocess.CompletedProcess:
    return kernel_cmd(["iptables", "-w", "5", *args], check=check)


def install(lab: str, block: str, allow: Optional[str] = None) -> None:
    """The chain and its jumps; ``allow`` is a subnet of the block this namespace may reach.

    (``allow``: a one-box stand-in machine's underlay, which is carved from
    the lab's own block -- testbed.cluster.standin.)
    """
    chain = guard_chain(lab)
    _iptables(["-N", chain])
    if allow:
        _iptables(["-A", chain, "-d", allow, "-m", "comment", "--comment",
                   f"testbed lab {lab}: this machine's underlay", "-j", "RETURN"])
    _iptables(["-A", chain, "-d", block, "-m", "comment", "--comment",
               f"testbed lab {lab}: traffic to the lab from outside it", "-j", "DROP"])
    for hook in HOOKS:
        _iptables(["-I", hook, "1", "-d", block, "-j", chain])


def remove(lab: str, block: Optional[str]) -> None:
    """Remove the chain and its jumps; absent pieces are fine (idempotent)."""
    chain = guard_chain(lab)
    for hook in HOOKS:
        # delete every jump to our chain, whatever block it was installed with
        rules = _iptables(["-S", hook], check=False).stdout.splitlines()
        for rule in rules:
            parts = rule.split()
            if parts[:2] == ["-A", hook] and parts[-2:] == ["-j", chain]:
                _iptables(["-D", hook, *parts[2:]], check=False)
    _iptables(["-F", chain], check=False)
    _iptables(["-X", chain], check=False)


def dropped(lab: str) -> Optional[int]:
    """Packets the guard has dropped for this lab, or None if it is not installed."""
    proc = _iptables(["-L", guard_chain(lab), "-v", "-x", "-n"], check=False)
    if proc.returncode != 0:
        return None
    total = 0
    for line in proc.stdout.splitlines()[2:]:
        fields = line.split()
        if len(fields) > 2 and fields[0].isdigit() and fields[2] == "DROP":
            total += int(fields[0])
    return total


def chains() -> List[str]:
    """Names of every guard chain in the root namespace (for clean)."""
    proc = _iptables(["-S"], check=False)
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "-N" and parts[1].startswith("TB-"):
            out.append(parts[1])
    return out
