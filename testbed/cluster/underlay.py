"""The underlay between machines, measured before a lab is built on it.

For each pair of machines: the path MTU (the interface the route to the other
machine leaves by, read with ``ip -json``), the RTT (ping) and the TCP
throughput (iperf3, one stream, 2 s). All over ssh on the machines
themselves, with the same tools the lab's own steps use; in one-box mode that
is between stand-in namespaces this run made. A pair's figures feed the MTU
check (:func:`testbed.cluster.slicing.check_underlay_mtu`), the predictions
(a crossing link's packets also cross the underlay) and the fidelity verdict
for a link configured faster than its underlay carries.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
from typing import List, Optional, Sequence

from testbed.cluster.ssh import Ssh
from testbed.errors import MachineError, ToolError

__all__ = ["path_mtu", "measure_pair", "measure_underlay", "IPERF_PORT"]

IPERF_PORT = 5299
PING_COUNT = 10
TCP_DURATION_S = 2.0


def path_mtu(ssh: Ssh, peer_address: str) -> int:
    """The MTU of the interface ``ssh``'s machine reaches ``peer_address`` by."""
    route = json.loads(ssh.run(["ip", "-json", "route", "get", peer_address], timeout_s=15.0).stdout or "[]")
    if not route or "dev" not in route[0]:
        raise MachineError(ssh.machine.name, f"no route to {peer_address} on the underlay")
    if route[0].get("mtu"):
        return int(route[0]["mtu"])
    link = json.loads(ssh.run(["ip", "-json", "link", "show", "dev", route[0]["dev"]],
                              timeout_s=15.0).stdout or "[]")
    return int(link[0]["mtu"])


def _rtt_ms(ssh: Ssh, peer_address: str) -> Optional[float]:
    from testbed.measure.ping import parse_ping_output, ping_argv

    proc = ssh.run(ping_argv(peer_address, count=PING_COUNT, interval_s=0.05), timeout_s=30.0, check=False)
    replies = [r.rtt_ms for r in parse_ping_output(proc.stdout + proc.stderr).replies]
    return round(statistics.mean(replies), 3) if replies else None


def _tcp_mbps(client: Ssh, server: Ssh, server_address: str) -> Optional[float]:
    """One iperf3 test from ``client`` to a one-off server on ``server``."""
    from testbed.measure.iperf import IperfTcpRunner

    argv = server.argv(["timeout", "30", "iperf3", "-s", "-1", "-J", "-B", server_address,
                        "-p", str(IPERF_PORT)])
    srv = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        runner = IperfTcpRunner()
        for _attempt in range(20):  # the server binds within moments; each try waits up to 3 s to connect
            proc = client.run(runner.argv(server_address, duration_s=TCP_DURATION_S, port=IPERF_PORT),
                              timeout_s=TCP_DURATION_S + 30.0, check=False)
            try:
                return round(runner.parse(proc.stdout)["throughput_mbps"], 1)
            except ToolError:
                if srv.poll() is not None:
                    return None
        return None
    finally:
        try:
            srv.communicate(timeout=10.0)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.communicate()


def measure_pair(a: Ssh, b: Ssh) -> dict:
    """Underlay figures from machine ``a`` to machine ``b``."""
    return {"a": a.machine.name, "b": b.machine.name,
            "mtu": min(path_mtu(a, b.machine.address), path_mtu(b, a.machine.address)),
            "rtt_ms": _rtt_ms(a, b.machine.address),
            "tcp_mbps": _tcp_mbps(a, b, b.machine.address)}


def measure_underlay(sshs: Sequence[Ssh], throughput: bool = True) -> List[dict]:
    """Every pair of machines (each pair once)."""
    out = []
    for a, b in itertools.combinations(sshs, 2):
        if throughput:
            out.append(measure_pair(a, b))
        else:
            out.append({"a": a.machine.name, "b": b.machine.name,
                        "mtu": min(path_mtu(a, b.machine.address), path_mtu(b, a.machine.address)),
                        "rtt_ms": _rtt_ms(a, b.machine.address), "tcp_mbps": None})
    return out
