"""One-box mode: stand-in machines made of network namespaces, each with its own sshd.

For tests and demos a lab across machines runs on this one machine: each
stand-in is a namespace ``tb.<lab>._m<machine>`` running its own OpenSSH
server (Debian's ``openssh-server``; its own config, host key, pid file and
authorized key in a temporary directory this process made), listening only on
the stand-in's underlay address. The stand-ins are joined by a veth underlay:
a bridge in ``tb.<lab>._u``, which is also the control point the ssh client
runs from. The underlay takes the last /24 of the lab's own block, so it is
inside the lab's guard and never meets the root namespace's traffic.

Everything after that is the code path of real machines: ssh with BatchMode
and ControlMaster, the agent building each slice, VXLAN between the
stand-ins' underlay addresses. Stand-ins share this machine's filesystem, so
each machine's state directory is its own (see :mod:`testbed.cluster.control`).

Each sshd is started by this process and stopped by its recorded pid and
start time only (:mod:`testbed.lab.procs`).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from testbed.cluster.machines import Machine
from testbed.cluster.ssh import Ssh
from testbed.errors import EnvironmentProblem, KernelError, MachineError
from testbed.lab import procs
from testbed.lab.build import open_ns, set_sysctls
from testbed.lab.nssocket import create_netns, ifindex
from testbed.readiness import wait_until

__all__ = ["UNDERLAY_MTU_BYTES", "SSHD", "standin_netns", "underlay_netns", "underlay_subnet",
           "create_standins", "standin_alive", "make_workdir"]

SSHD = "/usr/sbin/sshd"
UNDERLAY_MTU_BYTES = 9216  # a jumbo-frame underlay: a 9000-byte link plus VXLAN fits
UNDERLAY_IF = "underlay0"  # the stand-in's interface on the underlay (no clash with any root name)
KEYGEN_TIMEOUT_S = 30.0
PRIVSEP_DIR = "/run/sshd"  # OpenSSH's privilege separation directory (the package's own)


def standin_netns(lab: str, machine: str) -> str:
    return f"tb.{lab}._m{machine}"


def underlay_netns(lab: str) -> str:
    return f"tb.{lab}._u"


def underlay_subnet(block: str, segments: Sequence[str] = ()) -> ipaddress.IPv4Network:
    """The last /24 of the lab's block, which the plan must not use."""
    net = ipaddress.IPv4Network(block)
    last = list(net.subnets(new_prefix=24))[-1] if net.prefixlen <= 24 else net
    for seg in segments:
        if ipaddress.IPv4Network(seg).overlaps(last):
            raise EnvironmentProblem(f"the lab's block {block} has no room for a one-box underlay "
                                     f"({last} is used by the lab)", "give a larger block (--set block=CIDR)")
    return last


def _keygen(path: Path, comment: str) -> None:
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=KEYGEN_TIMEOUT_S,
                       stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise EnvironmentProblem("ssh-keygen is missing", "apt-get install openssh-client") from exc
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise KernelError(f"ssh-keygen {path.name} failed: {exc}") from exc


def _sshd_config(workdir: Path, machine: str, address: str) -> Path:
    home = workdir / machine
    home.mkdir(mode=0o700)
    _keygen(home / "host_key", f"testbed-standin-{machine}")
    config = home / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {address}:22",
        f"HostKey {home / 'host_key'}",
        f"PidFile {home / 'sshd.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PrintMotd no",
        "MaxSessions 64",
        "MaxStartups 64",
        "",
    ]))
    return config


def _underlay(lab: str, subnet: ipaddress.IPv4Network, names: Sequence[str]) -> Dict[str, str]:
    """The underlay namespace with its bridge, and one stand-in namespace per machine on it."""
    hosts = list(subnet.hosts())
    control = str(hosts[0])
    addresses = {name: str(hosts[9 + i]) for i, name in enumerate(names)}
    under = underlay_netns(lab)
    off = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
    create_netns(under)
    # the underlay's frames need no iptables (nothing filters there)
    set_sysctls(under, {**off, **({"net.bridge.bridge-nf-call-iptables": "0"}
                                  if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables") else {})})
    with open_ns(under) as ns:
        ns.link("set", ifname="lo", state="up")
        ns.link("add", ifname="br0", kind="bridge")
        bridge = ifindex(ns, "br0")
        ns.link("set", index=bridge, mtu=UNDERLAY_MTU_BYTES, state="up")
        ns.addr("add", index=bridge, address=control, prefixlen=subnet.prefixlen)
    for name in names:
        standin = standin_netns(lab, name)
        create_netns(standin)
        set_sysctls(standin, off)
        with open_ns(under) as ns:
            ns.link("add", ifname=f"u-{name}", kind="veth", peer={"ifname": UNDERLAY_IF, "net_ns_fd": standin})
            ns.link("set", ifname=f"u-{name}", mtu=UNDERLAY_MTU_BYTES, master=ifindex(ns, "br0"), state="up")
        with open_ns(standin) as ns:
            ns.link("set", ifname="lo", state="up")
            ns.link("set", ifname=UNDERLAY_IF, mtu=UNDERLAY_MTU_BYTES, state="up")
            ns.addr("add", index=ifindex(ns, UNDERLAY_IF), address=addresses[name], prefixlen=subnet.prefixlen)
    return addresses


def _start_sshd(lab: str, name: str, config: Path, log: Path) -> procs.ProcRecord:
    if not os.path.exists(SSHD):
        raise EnvironmentProblem("one-box mode needs OpenSSH's server", "apt-get install openssh-server")
    os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
    standin = standin_netns(lab, name)
    # nsenter --net only (not 'ip netns exec'): the stand-in keeps this machine's
    # mount namespace, so the namespaces its slice makes show in /run/netns here too
    with open(log, "ab") as out:
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{standin}", SSHD, "-D", "-e", "-f", str(config)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    start = procs.start_time(proc.pid)
    return procs.ProcRecord(pid=proc.pid, start=start or 0, netns=standin, kind="sshd", log=str(log))


def standin_alive(machine: Machine, sshd: procs.ProcRecord) -> str:
    """Why a stand-in is gone ("" while it is there): its namespace or its sshd."""
    if machine.standin and not os.path.exists(f"/run/netns/{machine.standin}"):
        return f"its namespace {machine.standin} is gone"
    if not procs.is_alive(sshd.pid, sshd.start):
        return f"its sshd (pid {sshd.pid}) is gone"
    return ""


def make_workdir(lab: str) -> str:
    """The run's own folder for the stand-ins' keys, configs and logs (mode 0700)."""
    return tempfile.mkdtemp(prefix=f"tb-{lab}-onebox-")


def create_standins(lab: str, names: Sequence[str], block: str, segments: Sequence[str],
                    records: List[procs.ProcRecord], workdir: str) -> Tuple[List[Machine], dict]:
    """Make the stand-ins and wait until each one's sshd answers; (machines, onebox doc).

    Each sshd is appended to ``records`` as soon as it runs, so a failure
    half-way leaves the caller every pid to stop.
    """
    subnet = underlay_subnet(block, segments)
    workdir = Path(workdir)
    onebox = {"workdir": str(workdir), "underlay": underlay_netns(lab), "subnet": str(subnet),
              "underlay_mtu": UNDERLAY_MTU_BYTES, "sshd": {}}
    _keygen(workdir / "client_key", f"testbed-{lab}")
    (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text())
    addresses = _underlay(lab, subnet, names)
    known = []
    machines = []
    for name in names:
        config = _sshd_config(workdir, name, addresses[name])
        rec = _start_sshd(lab, name, config, workdir / name / "sshd.log")
        records.append(rec)
        onebox["sshd"][name] = rec.to_dict()
        host_pub = (workdir / name / "host_key.pub").read_text().split()
        known.append(f"{addresses[name]} {host_pub[0]} {host_pub[1]}")
        machines.append(Machine(name=name, address=addresses[name], user="root",
                                key=str(workdir / "client_key"), python=sys.executable,
                                via_netns=underlay_netns(lab), standin=standin_netns(lab, name)))
    (workdir / "known_hosts").write_text("\n".join(known) + "\n")
    onebox["known_hosts"] = str(workdir / "known_hosts")
    for machine in machines:
        rec = procs.ProcRecord(**onebox["sshd"][machine.name])
        ssh = Ssh(machine, str(workdir / "ctl"), onebox["known_hosts"])

        def answers(ssh=ssh) -> bool:
            try:
                ssh.run(["true"], timeout_s=10.0)
                return True
            except MachineError:
                return False

        def exited(rec=rec):
            return None if procs.is_alive(rec.pid, rec.start) else \
                f"sshd exited: {_tail(Path(rec.log))}"

        wait_until(answers, f"sshd of stand-in {machine.name}", pid=rec.pid, exited=exited,
                   error=MachineErrorFor(machine.name))
    return machines, onebox


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def MachineErrorFor(name: str):  # noqa: N802 - a class factory, named like the class it makes
    """A RunError subclass whose message names machine ``name`` (for wait_until's ``error``)."""

    class _Err(MachineError):
        def __init__(self, message: str):
            super().__init__(name, message)

    return _Err
