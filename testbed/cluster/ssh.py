"""Control over ssh, the way Mininet Cluster Edition does it.

Every command for a machine goes through ``ssh`` with Mininet Cluster's base
options (``RemoteMixin.sshbase``: ``-q``, ``BatchMode=yes`` so ssh never asks
for a password) and its connection sharing (``ControlMaster=auto`` with a
``ControlPath`` and ``ControlPersist``): the first command opens one
connection per machine, later ones reuse it in milliseconds. We leave out
Mininet's ``-tt`` (a terminal would mangle tools' output) and agent
forwarding (no credentials leave this machine).

The remote command is one argv list, quoted with :func:`shlex.join` (ssh
hands the remote side a single command line). The shared connection is
started on its own first (``ssh -N -f``, stdio on /dev/null); commands then
use it with ``ControlMaster=no`` (never ``auto``: a master born inside a
command keeps that command's stderr open while it persists). A one-box stand-in is reached
from its control namespace (``via_netns``): ssh then runs under ``nsenter
--net``, and that is the only difference from a real machine.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from testbed.cluster.machines import Machine
from testbed.errors import MachineError

__all__ = ["Ssh", "ssh_base", "SSH_UNREACHABLE"]

SSH_UNREACHABLE = 255  # ssh's own exit code for "could not connect / connection lost"
CONNECT_TIMEOUT_S = 5
PERSIST_S = 600
_OPEN_LOCKS: Dict[str, threading.Lock] = {}


def ssh_base() -> List[str]:
    """Mininet Cluster Edition's ssh base command, less ``-tt`` and agent forwarding."""
    from mininet.examples.cluster import RemoteMixin

    out = list(RemoteMixin.sshbase)
    # drop "-tt" and the "-o ForwardAgent=yes" pair
    cleaned: List[str] = []
    i = 0
    while i < len(out):
        if out[i] == "-tt":
            i += 1
            continue
        if out[i] == "-o" and i + 1 < len(out) and out[i + 1].startswith("ForwardAgent"):
            i += 2
            continue
        cleaned.append(out[i])
        i += 1
    return cleaned


class Ssh:
    """Run commands on one machine over a shared ssh connection."""

    def __init__(self, machine: Machine, control_dir: str, known_hosts: Optional[str] = None):
        self.machine = machine
        self.control_dir = control_dir
        self.known_hosts = known_hosts

    @property
    def socket(self) -> str:
        """The shared connection's control socket (one per machine)."""
        return f"{self.control_dir}/{self.machine.name}"

    def options(self, mode: str = "shared") -> List[str]:
        """``mode``: "shared" (use the master if it is there), "master" (become it), "fresh"."""
        m = self.machine
        opts = ["-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=2",
                "-o", "ServerAliveCountMax=3", "-p", str(m.port)]
        if mode == "master":
            opts += ["-o", "ControlMaster=yes", "-o", f"ControlPath={self.socket}",
                     "-o", f"ControlPersist={PERSIST_S}"]
        elif mode == "shared":
            # never "auto": a master born inside a command would keep that
            # command's stderr pipe open for as long as it persists
            opts += ["-o", "ControlMaster=no", "-o", f"ControlPath={self.socket}"]
        else:
            opts += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        if m.key:
            opts += ["-i", m.key, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:  # one-box: the stand-ins' own keys; this user's ssh config stays out
            opts += ["-F", "none", "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                     "-o", "GlobalKnownHostsFile=/dev/null"]
        return opts

    def _via(self) -> List[str]:
        return ["nsenter", f"--net=/run/netns/{self.machine.via_netns}"] if self.machine.via_netns else []

    def prefix(self, shared: bool = True) -> List[str]:
        """The argv up to and including the destination and ``--``."""
        return [*self._via(), *ssh_base(), *self.options("shared" if shared else "fresh"),
                self.machine.destination, "--"]

    def argv(self, remote: Sequence[str], shared: bool = True) -> List[str]:
        return [*self.prefix(shared), shlex.join(list(remote))]

    def open(self, timeout_s: float = 30.0) -> None:
        """Start the shared connection (ssh -N -f: it backgrounds once authenticated), if not up.

        One opener at a time per socket: two masters racing for one socket
        would leave the loser running as a plain backgrounded session.
        """
        with _OPEN_LOCKS.setdefault(self.socket, threading.Lock()):
            self._open(timeout_s)

    def _open(self, timeout_s: float) -> None:
        if os.path.exists(self.socket):
            return
        Path(self.control_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = [*self._via(), *ssh_base(), *self.options("master"), "-N", "-f", self.machine.destination]
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise MachineError(self.machine.name, f"no ssh connection to {self.machine.destination} "
                               f"within {timeout_s:g} s") from exc
        if proc.returncode != 0:
            err = (proc.stderr or "").strip().splitlines()
            raise MachineError(self.machine.name, f"unreachable over ssh ({self.machine.destination}"
                               f"{': ' + err[-1] if err else ''})")

    def run(self, remote: Sequence[str], timeout_s: float, input_text: Optional[str] = None,
            check: bool = True, shared: bool = True) -> subprocess.CompletedProcess:
        """Run ``remote`` (an argv list) on the machine; MachineError names it on failure."""
        if shared:
            self.open()
        try:
            proc = subprocess.run(self.argv(remote, shared), capture_output=True, text=True,
                                  timeout=timeout_s, input=input_text, stdin=None if input_text is not None
                                  else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise MachineError(self.machine.name, f"{remote[0]} did not answer within {timeout_s:g} s "
                               f"over ssh to {self.machine.destination}") from exc
        if proc.returncode == SSH_UNREACHABLE:
            err = (proc.stderr or "").strip().splitlines()
            raise MachineError(self.machine.name, f"unreachable over ssh ({self.machine.destination}"
                               f"{': ' + err[-1] if err else ''})")
        if check and proc.returncode != 0:
            err = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise MachineError(self.machine.name, f"{' '.join(list(remote)[:4])} exited {proc.returncode}"
                               f"{': ' + err[-1] if err else ''}")
        return proc

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the shared connection's master to exit (nothing if there is none)."""
        if not os.path.exists(self.socket):
            return
        argv = [*self._via(), *ssh_base(), *self.options("shared"), "-O", "exit", self.machine.destination]
        try:
            subprocess.run(argv, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pass
