"""Mininet's own CLI on a running testbed lab.

A lab's nodes are named namespaces that outlive any one process, so Mininet
does not build them; instead each node gets a Mininet ``Host`` whose shell is
started inside the node's existing namespace. Mininet's CLI and its node API
(``cmd``, ``popen``, ``sendCmd``) then work as usual: ``h1 ping -c 3 h2``,
``pingall``, ``xterm``. Leaving the CLI ends only the shells it started
(Mininet's ``Node.terminate`` kills its own shell's process group); the lab
stays up until ``testbed down``.
"""

from __future__ import annotations

import os
from typing import Optional

from mininet.cli import CLI
from mininet.net import Mininet
from mininet.link import Intf
from mininet.node import Host

from testbed.lab.lab import Lab

__all__ = ["NamespaceHost", "mininet_view", "run_cli"]


class LabIntf(Intf):
    """An existing lab interface; its address comes from the lab plan (no ifconfig)."""

    def __init__(self, name: str, node, address: Optional[str]):
        self._address = address
        super().__init__(name, node=node)
        if address:
            self.ip, self.prefixLen = address.split("/")[0], int(address.split("/")[1])

    def updateIP(self):  # noqa: N802 - Mininet's API
        return self.ip

    def updateMAC(self):  # noqa: N802 - Mininet's API
        return None


class NamespaceHost(Host):
    """A Mininet host attached to an existing named network namespace."""

    def __init__(self, name: str, netns: str, ip: Optional[str] = None, **params):
        self.netns = netns
        self._lab_ip = ip
        super().__init__(name, inNamespace=True, **params)

    def startShell(self, mnopts=None):  # noqa: N802 - Mininet's API
        # Mininet would create a fresh namespace ('mnexec -n'); enter ours instead.
        self.inNamespace = False
        try:
            super().startShell(mnopts)
        finally:
            self.inNamespace = True

    def _popen(self, cmd, **params):
        if cmd and cmd[0] == "mnexec" and not self.shell:
            cmd = ["ip", "netns", "exec", self.netns] + list(cmd)
        return super()._popen(cmd, **params)

    def addIntf(self, intf, port=None, moveIntfFn=None):  # noqa: N802 - Mininet's API
        # The interface is already inside this namespace: nothing to move.
        return super().addIntf(intf, port=port, moveIntfFn=lambda *args, **kwargs: True)

    def IP(self, intf=None):  # noqa: N802 - Mininet's API
        return self._lab_ip if intf is None else super().IP(intf)

    def mountPrivateDirs(self):  # noqa: N802 - Mininet's API
        pass


class LabCLI(CLI):
    """Mininet's CLI, accepting node names with '-' (cw-h1 ping gcp-h1)."""

    identchars = CLI.identchars + "-"


def mininet_view(lab: Lab) -> Mininet:
    """A Mininet object whose hosts are the lab's hosts and routers."""
    net = Mininet(topo=None, build=False, controller=None)
    for name in lab.node_names():
        node = lab.node(name)
        if node.role == "switch":
            continue
        host = NamespaceHost(name, node.netns, node.ip)
        for intf in lab.plan.node(name).intfs:
            LabIntf(intf.name, host, intf.address)
        net.hosts.append(host)
        net.nameToNode[name] = host
    return net


def stop_view(net: Mininet) -> None:
    for host in net.hosts:
        host.terminate()


def run_cli(lab: Lab, script: Optional[str] = None) -> None:
    net = mininet_view(lab)
    try:
        if script is None:
            LabCLI(net)
        else:
            with open(os.devnull) as no_input:  # a script run reads no terminal
                LabCLI(net, stdin=no_input, script=script)
    finally:
        stop_view(net)
