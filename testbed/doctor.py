"""What this machine can do, for ``testbed doctor`` and for the results' environment.

:func:`probe` tests every kernel feature a lab uses FOR REAL, inside one
scratch network namespace ``tbn-doctor-<pid>`` (a veth pair, a bridge, a TUN
and an ifb device in it; each qdisc kind added on the veth; NFQUEUE and
``statistic`` rules added to that namespace's own iptables) and always
removes the namespace again. Nothing is sent anywhere, and nothing outside
the scratch namespace is changed: the root namespace is only read
(``/sys/module``, ``/proc/sys/net/bridge``), tools are asked their version.

The report is a plain JSON-ready dict (schema ``testbed.doctor/1``)::

    root, kernel, cpus, python
    qdiscs:   {netem, htb, tbf, fq, ingress, ifb-device: CHECK}
    features: {netns, veth, bridge, tun, nfqueue, statistic, openvswitch, br_netfilter: CHECK}
    tools:    {iperf3, ping, ip, tc, iptables, mnexec, irtt, tcpdump, pyroute2, scapy,
               mininet, netfilterqueue: CHECK + version, required}
    delay_backend: "netem" | "userspace", delay_backend_reason
    scratch_netns: {name, removed}

where CHECK is ``{"ok": True | False | None, "detail": str, "hint": str}``
(``None``: not tested, e.g. without root) and ``hint`` says how to fix a
missing thing (a Debian package or a kernel module).

:func:`render` (a readable table) and :func:`problems` (what blocks running
labs at all) are pure functions of a report, so a saved report renders the
same way later.
"""

from __future__ import annotations

import errno
import io
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import TC_H_INGRESS, TC_H_ROOT
from rich.console import Console
from rich.table import Table

from testbed.cmd import run_short
from testbed.errors import EnvironmentProblem
from testbed.lab.nssocket import ifindex
from testbed.shaping.netem import probe_netem
from testbed.versions import TOOLS, ask_version, parse_version, tool_version

__all__ = [
    "probe",
    "render",
    "problems",
    "parse_version",
    "tool_version",
    "SCHEMA",
    "QDISC_KINDS",
    "FEATURES",
    "TOOL_NAMES",
    "REQUIRED_TOOLS",
]

SCHEMA = "testbed.doctor/1"
QDISC_KINDS: Tuple[str, ...] = ("netem", "htb", "tbf", "fq", "ingress", "ifb-device")
FEATURES: Tuple[str, ...] = (
    "netns",
    "veth",
    "bridge",
    "tun",
    "nfqueue",
    "statistic",
    "openvswitch",
    "br_netfilter",
)
#: Tools without which no lab runs (the ``problems`` list names them).
REQUIRED_TOOLS: Tuple[str, ...] = ("iperf3", "ping", "ip")

_CMD_TIMEOUT_S = 10.0
_VERSION_TIMEOUT_S = 5.0
_VETH = ("tbn-d0", "tbn-d1")  # d0: qdisc kinds one after another; d1: netem
_SYS_MODULE = Path("/sys/module")
_BRIDGE_SYSCTL = Path("/proc/sys/net/bridge")
_DEV_TUN = Path("/dev/net/tun")

_HINTS: Dict[str, str] = {
    "netem": "modprobe sch_netem (Ubuntu: apt-get install linux-modules-extra-$(uname -r)); "
    "until then the userspace delay backend is used",
    "htb": "modprobe sch_htb (kernel option CONFIG_NET_SCH_HTB)",
    "tbf": "modprobe sch_tbf (kernel option CONFIG_NET_SCH_TBF)",
    "fq": "modprobe sch_fq (kernel option CONFIG_NET_SCH_FQ)",
    "ingress": "modprobe sch_ingress (kernel option CONFIG_NET_SCH_INGRESS)",
    "ifb-device": "modprobe ifb (kernel option CONFIG_IFB)",
    "netns": "run as root on a kernel with network namespaces (CONFIG_NET_NS); "
    "inside a container it needs CAP_SYS_ADMIN",
    "veth": "modprobe veth (kernel option CONFIG_VETH)",
    "bridge": "modprobe bridge (kernel option CONFIG_BRIDGE)",
    "tun": "modprobe tun (kernel option CONFIG_TUN)",
    "nfqueue": "apt-get install iptables; modprobe nfnetlink_queue xt_NFQUEUE "
    "(nft backend: nft_queue)",
    "statistic": "apt-get install iptables; modprobe xt_statistic",
    "openvswitch": "modprobe openvswitch; apt-get install openvswitch-switch",
    "br_netfilter": "modprobe br_netfilter (needed for physdev matches on bridged links)",
    "iperf3": "apt-get install iperf3",
    "ping": "apt-get install iputils-ping",
    "ip": "apt-get install iproute2",
    "tc": "apt-get install iproute2",
    "iptables": "apt-get install iptables",
    "mnexec": "apt-get install mininet",
    "irtt": "apt-get install irtt (optional: one-way delay and IPDV probes)",
    "tcpdump": "apt-get install tcpdump (optional: testbed capture)",
    "pyroute2": "pip install pyroute2",
    "scapy": "pip install scapy",
    "mininet": "pip install mininet",
    "netfilterqueue": "apt-get install libnetfilter-queue-dev; pip install NetfilterQueue",
}


# report name -> distribution name on PyPI
_PACKAGES: Tuple[Tuple[str, str], ...] = (
    ("pyroute2", "pyroute2"),
    ("scapy", "scapy"),
    ("mininet", "mininet"),
    ("netfilterqueue", "NetfilterQueue"),
)
TOOL_NAMES: Tuple[str, ...] = ("python",) + tuple(TOOLS) + tuple(
    name for name, _dist in _PACKAGES
)
_OPTIONAL_TOOLS = ("mnexec", "irtt", "tcpdump")


# ------------------------------------------------------------------ helpers


def _check(ok: Optional[bool], detail: str, name: str) -> Dict[str, Any]:
    return {"ok": ok, "detail": detail, "hint": "" if ok else _HINTS.get(name, "")}


def _run(argv: List[str], timeout_s: float = _CMD_TIMEOUT_S) -> Tuple[bool, str]:
    """Run argv; (exit code 0, stdout if ok else the last line of stderr)."""
    return run_short(argv, timeout_s)


# ------------------------------------------------------------------ tools


def _probe_tool(name: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"required": name in REQUIRED_TOOLS}
    path = shutil.which(TOOLS[name][0][0])
    if path is None:
        entry.update(_check(False, "not installed", name), version="")
        return entry
    ok, out = ask_version(name, _VERSION_TIMEOUT_S)
    if not ok:
        entry.update(_check(False, f"{path} does not run: {out}", name), version="")
        return entry
    version = tool_version(name, out) or "unknown"
    entry.update(_check(True, path, name), version=version)
    return entry


def _probe_package(name: str, dist: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"required": False}
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        entry.update(_check(False, f"python package {dist} not installed", name), version="")
        return entry
    entry.update(_check(True, f"python package {dist}", name), version=version)
    return entry


def _probe_tools() -> Dict[str, Dict[str, Any]]:
    tools: Dict[str, Dict[str, Any]] = {
        "python": {
            "ok": True,
            "detail": sys.executable,
            "hint": "",
            "version": platform.python_version(),
            "required": True,
        }
    }
    for name in TOOLS:
        tools[name] = _probe_tool(name)
    for name, dist in _PACKAGES:
        tools[name] = _probe_package(name, dist)
    return tools


# ------------------------------------------------------------------ kernel


def _iptables_rule(netns: str, rule: List[str]) -> Tuple[bool, str]:
    return _run(["ip", "netns", "exec", netns, "iptables", "-w", "5", "-A", "OUTPUT", *rule])


def _qdisc_probes() -> List[Tuple[str, int, int, Dict[str, Any]]]:
    """(kind, handle, parent, pyroute2 tc arguments) for each plain qdisc kind."""
    return [
        ("htb", 0x10000, TC_H_ROOT, {"default": 1}),
        ("tbf", 0x10000, TC_H_ROOT, {"rate": "10mbit", "burst": 20000, "latency": "50ms"}),
        ("fq", 0x10000, TC_H_ROOT, {}),
        ("ingress", 0xFFFF0000, TC_H_INGRESS, {}),
    ]


def _netlink_text(exc: NetlinkError) -> str:
    return str(exc.args[1]) if len(exc.args) > 1 and exc.args[1] else os.strerror(exc.code)


def _probe_qdiscs(netns: str) -> Dict[str, Dict[str, Any]]:
    """Each kind added (then removed) as the root qdisc of the scratch veth."""
    found: Dict[str, Dict[str, Any]] = {}
    ok, reason = probe_netem(netns, _VETH[1])
    found["netem"] = _check(ok, reason, "netem")
    try:
        with IPRoute(netns=netns, ext_ack=True) as ipr:
            index = ifindex(ipr, _VETH[0], netns)
            for kind, handle, parent, args in _qdisc_probes():
                try:
                    ipr.tc("add", kind, index, handle, **args)
                except NetlinkError as exc:
                    text = _netlink_text(exc)
                    if exc.code == errno.ENOENT:  # the kernel does not know this kind
                        text = f"kernel has no {kind} qdisc ({text})"
                    found[kind] = _check(False, text, kind)
                    continue
                found[kind] = _check(True, f"{kind} qdisc accepted by the kernel", kind)
                ipr.tc("del", index=index, handle=handle, parent=parent)
    except (NetlinkError, OSError, IndexError) as exc:
        for kind, _h, _p, _a in _qdisc_probes():
            found.setdefault(kind, _check(None, f"not tested: {exc}", kind))
    return found


def _probe_in_namespace(netns: str) -> Tuple[Dict[str, Dict], Dict[str, Dict]]:
    """(qdiscs, features) tested inside the (existing) scratch namespace."""
    features: Dict[str, Dict[str, Any]] = {}
    qdiscs: Dict[str, Dict[str, Any]] = {}

    def link(name: str, argv: List[str], what: str) -> bool:
        ok, out = _run(["ip", "-n", netns, *argv])
        features_or_qdiscs = qdiscs if name == "ifb-device" else features
        features_or_qdiscs[name] = _check(ok, what if ok else out, name)
        return ok

    veth_ok = link(
        "veth",
        ["link", "add", _VETH[0], "type", "veth", "peer", "name", _VETH[1]],
        "veth pair created",
    )
    link("bridge", ["link", "add", "tbn-br0", "type", "bridge"], "bridge created")
    link("ifb-device", ["link", "add", "tbn-ifb0", "type", "ifb"], "ifb device created")
    tun_ok = link("tun", ["tuntap", "add", "dev", "tbn-tun0", "mode", "tun"], "TUN device created")
    if not tun_ok and not _DEV_TUN.exists():
        features["tun"]["detail"] += f" ({_DEV_TUN} is missing)"

    ok, out = _iptables_rule(
        netns,
        ["-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", "4242", "--queue-bypass"],
    )
    features["nfqueue"] = _check(ok, "iptables NFQUEUE rule accepted" if ok else out, "nfqueue")
    ok, out = _iptables_rule(
        netns, ["-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "ACCEPT"]
    )
    features["statistic"] = _check(
        ok, "iptables statistic match accepted" if ok else out, "statistic"
    )

    if veth_ok:
        qdiscs.update(_probe_qdiscs(netns))
    else:
        for kind in QDISC_KINDS:
            qdiscs.setdefault(kind, _check(None, "not tested: no veth to attach it to", kind))
    return qdiscs, features


def _scratch_name() -> str:
    base = f"tbn-doctor-{os.getpid()}"
    name, n = base, 0
    while Path("/run/netns", name).exists():  # a stale one of a dead process: leave it
        n += 1
        name = f"{base}-{n}"
    return name


def _probe_kernel(netns: str) -> Tuple[Dict[str, Dict], Dict[str, Dict], Dict[str, Any]]:
    ok, out = _run(["ip", "netns", "add", netns])
    if not ok:
        features = {"netns": _check(False, f"cannot create a namespace: {out}", "netns")}
        untested = f"not tested: no scratch namespace ({out})"
        for name in ("veth", "bridge", "tun", "nfqueue", "statistic"):
            features[name] = _check(None, untested, name)
        qdiscs = {kind: _check(None, untested, kind) for kind in QDISC_KINDS}
        return qdiscs, features, {"name": netns, "removed": True}
    try:
        qdiscs, features = _probe_in_namespace(netns)
        features["netns"] = _check(True, f"scratch namespace {netns} created", "netns")
    finally:
        removed, _out = _run(["ip", "netns", "del", netns])
    return qdiscs, features, {"name": netns, "removed": removed}


def _probe_openvswitch(ovs_vsctl: Callable[[], Tuple[bool, str]]) -> Dict[str, Any]:
    loaded = (_SYS_MODULE / "openvswitch").exists()
    ok, out = ovs_vsctl()
    tool = "ovs-vsctl " + parse_version(r"\) (\S+)", out) if ok else "ovs-vsctl not installed"
    if loaded:
        return _check(True, f"kernel module loaded; {tool}", "openvswitch")
    return _check(False, f"kernel module not loaded; {tool}", "openvswitch")


def _probe_br_netfilter() -> Dict[str, Any]:
    sysctl = _BRIDGE_SYSCTL / "bridge-nf-call-iptables"
    if not sysctl.exists():
        return _check(False, "br_netfilter not loaded (no net.bridge sysctls)", "br_netfilter")
    values = []
    for name in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
        path = _BRIDGE_SYSCTL / name
        if path.exists():
            values.append(f"{name}={path.read_text().strip()}")
    detail = "loaded; " + ", ".join(values)
    if sysctl.read_text().strip() == "1":
        detail += " (frames crossing a root-namespace bridge pass the root iptables chains)"
    return _check(True, detail, "br_netfilter")


# ------------------------------------------------------------------ probe


def probe() -> Dict[str, Any]:
    """Test what this machine can do; see the module docstring for the shape."""
    root = os.geteuid() == 0
    report: Dict[str, Any] = {
        "schema": SCHEMA,
        "root": root,
        "kernel": platform.release(),
        "cpus": os.cpu_count() or 0,
        "python": platform.python_version(),
    }
    if root:
        qdiscs, features, scratch = _probe_kernel(_scratch_name())
    else:
        untested = "not tested: needs root"
        qdiscs = {kind: _check(None, untested, kind) for kind in QDISC_KINDS}
        features = {
            name: _check(None, untested, name)
            for name in ("netns", "veth", "bridge", "tun", "nfqueue", "statistic")
        }
        scratch = {"name": "", "removed": True}
    features["openvswitch"] = _probe_openvswitch(
        lambda: _run(["ovs-vsctl", "--version"], _VERSION_TIMEOUT_S)
    )
    features["br_netfilter"] = _probe_br_netfilter()
    report["qdiscs"] = {kind: qdiscs[kind] for kind in QDISC_KINDS}
    report["features"] = {name: features[name] for name in FEATURES}
    report["tools"] = _probe_tools()
    netem = report["qdiscs"]["netem"]
    if netem["ok"]:
        report["delay_backend"] = "netem"
        report["delay_backend_reason"] = "the kernel accepts netem qdiscs"
    else:
        report["delay_backend"] = "userspace"
        report["delay_backend_reason"] = netem["detail"]
    report["scratch_netns"] = scratch
    return report


# ------------------------------------------------------------------ problems


def _ok(report: Dict[str, Any], section: str, name: str) -> Optional[bool]:
    return report.get(section, {}).get(name, {}).get("ok")


def _entry(report: Dict[str, Any], section: str, name: str) -> Dict[str, Any]:
    return report.get(section, {}).get(name, {})


def problems(report: Dict[str, Any]) -> List[EnvironmentProblem]:
    """What keeps labs from running at all on the machine ``report`` describes.

    Only things found missing count (``ok`` False); untested ones are
    covered by the "not root" problem.
    """
    found: List[EnvironmentProblem] = []
    if not report.get("root"):
        found.append(
            EnvironmentProblem(
                "not running as root: labs need root for network namespaces, links and tc",
                "run it with sudo",
            )
        )
    for section, name, what in (
        ("features", "netns", "network namespaces do not work"),
        ("features", "veth", "veth pairs cannot be created"),
        ("qdiscs", "htb", "the kernel has no htb qdisc (rate shaping)"),
    ):
        entry = _entry(report, section, name)
        if entry.get("ok") is False:
            found.append(
                EnvironmentProblem(f"{what}: {entry.get('detail', '')}", entry.get("hint", ""))
            )
    if _ok(report, "qdiscs", "netem") is False:
        nfqueue = _entry(report, "features", "nfqueue")
        if nfqueue.get("ok") is False:
            found.append(
                EnvironmentProblem(
                    "no delay backend: the kernel has no netem and iptables NFQUEUE does not "
                    f"work ({nfqueue.get('detail', '')})",
                    f"{_HINTS['netem'].split(';')[0]}; or {nfqueue.get('hint', '')}",
                )
            )
        if _ok(report, "tools", "netfilterqueue") is False:
            found.append(
                EnvironmentProblem(
                    "no delay backend: the kernel has no netem and the userspace backend "
                    "needs the NetfilterQueue python package",
                    _HINTS["netfilterqueue"],
                )
            )
    for tool in REQUIRED_TOOLS:
        entry = _entry(report, "tools", tool)
        if entry.get("ok") is False:
            found.append(
                EnvironmentProblem(
                    f"{tool} is missing: {entry.get('detail', '')}",
                    entry.get("hint", "") or _HINTS.get(tool, ""),
                )
            )
    return found


# ------------------------------------------------------------------ render


def _status(ok: Optional[bool]) -> str:
    return {True: "ok", False: "MISSING"}.get(ok, "untested")


def render(report: Dict[str, Any], width: int = 110) -> str:
    """The report as text: a summary, kernel and tool tables, then the problems."""
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, color_system=None, force_terminal=False, highlight=False
    )
    root = "yes" if report.get("root") else "no"
    console.print(
        f"testbed doctor: kernel {report.get('kernel', '?')}, {report.get('cpus', '?')} CPUs, "
        f"python {report.get('python', '?')}, root: {root}"
    )
    console.print(
        f"delay backend: {report.get('delay_backend', '?')} "
        f"({report.get('delay_backend_reason', '')})"
    )

    kernel = Table(title="kernel", title_justify="left", expand=True)
    for column in ("check", "status", "detail", "fix"):
        kernel.add_column(column, overflow="fold")
    for section in ("qdiscs", "features"):
        for name, entry in report.get(section, {}).items():
            label = f"qdisc {name}" if section == "qdiscs" and name != "ifb-device" else name
            kernel.add_row(
                label, _status(entry.get("ok")), entry.get("detail", ""), entry.get("hint", "")
            )
    console.print(kernel)

    tools = Table(title="tools", title_justify="left")
    for column in ("tool", "version", "status", "fix"):
        tools.add_column(column, overflow="fold")
    for name, entry in report.get("tools", {}).items():
        status = _status(entry.get("ok"))
        if entry.get("ok") is False and not entry.get("required") and name in _OPTIONAL_TOOLS:
            status += " (optional)"
        tools.add_row(name, entry.get("version", ""), status, entry.get("hint", ""))
    console.print(tools)

    found = problems(report)
    if found:
        console.print(f"{len(found)} problem(s) keep labs from running:")
        for problem in found:
            fix = f" (fix: {problem.hint})" if problem.hint else ""
            console.print(f"  - {problem.message}{fix}")
    else:
        console.print("no blocking problems: labs can run here")
    scratch = report.get("scratch_netns", {})
    if scratch.get("removed") is False:
        console.print(
            f"WARNING: scratch namespace {scratch.get('name')} could not be removed: "
            f"ip netns del {scratch.get('name')}"
        )
    return buffer.getvalue()
