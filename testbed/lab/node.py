"""Run commands inside one lab node's network namespace.

A node is a named network namespace (``/run/netns/<netns>``). Commands run in
it through ``ip netns exec`` as argv lists, always with a timeout and a checked
exit code; nothing is ever built as a shell string.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Optional, Sequence

from testbed.errors import ToolError

__all__ = ["Node"]


@dataclass(frozen=True)
class Node:
    """A handle on one lab node (host or router); cheap to create."""

    name: str  # node name in the topology, e.g. "h1"
    netns: str  # namespace name, e.g. "tb-lab1-h1"
    ip: Optional[str] = None  # primary address, no prefix length
    role: str = "host"  # "host", "router" or "switch"
    site: Optional[str] = None
    intfs: tuple = field(default_factory=tuple)  # interface names, in order
    # a node on another machine (a lab across machines): the ssh argv up to the
    # remote command (testbed.cluster.ssh); () for a node on this machine
    remote: tuple = ()
    machine: Optional[str] = None

    def argv(self, argv: Sequence[str]) -> list:
        """The argv that runs ``argv`` inside this node's namespace (over ssh if it is remote)."""
        local = ["ip", "netns", "exec", self.netns, *argv]
        if self.remote:
            return [*self.remote, shlex.join(local)]
        return local

    def run(
        self,
        argv: Sequence[str],
        timeout_s: float,
        check: bool = True,
        input_text: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        """Run to completion; raise ToolError on timeout or (if check) failure."""
        full = self.argv(argv)
        try:
            proc = subprocess.run(
                full,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                input=input_text,
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolError(
                f"{self.name}: {argv[0]} did not finish within {timeout_s:g} s"
            ) from exc
        except FileNotFoundError as exc:
            raise ToolError(f"{self.name}: cannot run {full[0]}: {exc}") from exc
        if check and proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            tail = err[-1] if err else ""
            raise ToolError(
                f"{self.name}: {' '.join(argv[:3])} exited {proc.returncode}: {tail}"
            )
        return proc

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a process inside the namespace; the caller owns its pid."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        return subprocess.Popen(self.argv(argv), **kwargs)
