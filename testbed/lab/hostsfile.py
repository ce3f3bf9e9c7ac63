"""Host names that resolve inside a lab: one hosts file per lab, bound the way ``ip netns exec`` binds.

``ip netns exec NS CMD`` bind-mounts every file of ``/etc/netns/NS/`` over
the same name in ``/etc`` (ip-netns(8)), so ``/etc/netns/NS/hosts`` is what
``/etc/hosts`` reads inside. The lab writes one hosts file in its state
directory (every host and router: its first address and its name) and links
it from ``/etc/netns/<node namespace>/hosts`` for each host and router; so
``testbed exec LAB h1 -- ping h2`` works. Teardown removes exactly the
``/etc/netns/tb.<lab>.*`` entries (a lab name holds no ``.``, so the prefix
names one lab) and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

from testbed.errors import KernelError
from testbed.lab.naming import NETNS_PREFIX

__all__ = ["ETC_NETNS", "hosts_text", "install", "remove", "leftovers"]

#: where ``ip netns exec`` looks for per-namespace files
ETC_NETNS = Path(os.environ.get("TESTBED_ETC_NETNS", "/etc/netns"))
HOSTS = "hosts"


def hosts_text(plan) -> str:
    """The lab's hosts file: localhost, then ``address name`` for every host and router."""
    lines = ["127.0.0.1\tlocalhost", f"# testbed lab {plan.lab}: every host and router"]
    for node in sorted(plan.nodes.values(), key=lambda n: n.name):
        if node.role != "switch" and node.ip:
            lines.append(f"{node.ip}\t{node.name}")
    return "\n".join(lines) + "\n"


def install(plan, lab_dir: Path) -> Path:
    """Write ``lab_dir/hosts`` and link it for every host and router namespace of ``plan``."""
    target = Path(lab_dir) / HOSTS
    try:
        target.write_text(hosts_text(plan))
        for node in plan.nodes.values():
            if node.role == "switch":
                continue
            directory = ETC_NETNS / node.netns
            directory.mkdir(parents=True, exist_ok=True)
            link = directory / HOSTS
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
    except OSError as exc:
        raise KernelError(f"writing the lab's hosts file under {ETC_NETNS}: {exc}", exc.errno) from exc
    return target


def _entries(lab: str) -> List[Path]:
    prefix = f"{NETNS_PREFIX}{lab}."
    try:
        return [p for p in ETC_NETNS.iterdir() if p.name.startswith(prefix)]
    except FileNotFoundError:
        return []


def remove(lab: str) -> int:
    """Remove ``/etc/netns/tb.<lab>.*`` (only our hosts link in each); returns how many."""
    removed = 0
    for directory in _entries(lab):
        link = directory / HOSTS
        if link.is_symlink():
            link.unlink()
        try:
            directory.rmdir()  # only if empty: anything else in it is not ours
            removed += 1
        except OSError:
            pass
    try:
        ETC_NETNS.rmdir()  # only if nothing else is left in it (ip netns exec does without it)
    except OSError:
        pass
    return removed


def leftovers() -> List[str]:
    """Names of ``/etc/netns`` entries of any lab (``tb.*``)."""
    try:
        return sorted(p.name for p in ETC_NETNS.iterdir() if p.name.startswith(NETNS_PREFIX))
    except FileNotFoundError:
        return []
