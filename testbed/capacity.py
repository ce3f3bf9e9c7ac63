"""How much traffic this machine can emulate faithfully: the delay line's capacity.

:func:`measure_capacity` brings up two short-lived ``pair`` labs -- one with an
unshaped link (the raw veth rate) and one with a 20 ms line each way and no
rate limit -- runs iperf3 TCP (2 streams) h1 -> h2 through each, and reports::

    schema: "testbed.capacity/1"
    machine: {kernel, cpus, testbed}        # the fingerprint a cached result must match
    measured_at, seconds, streams, delay_ms, backend ("netem" | "userspace"),
    load_avg_1m                             # the machine's load when it started
    delay_line_bps, late_p99_ms             # through the line, and its lateness p99 then
    raw_veth_bps                            # the same TCP on a plain veth pair
    cpu_s_per_gb                            # delay line CPU per GB carried (userspace only)
    lines: [{lines, mtu, gso_bytes, flows, total_bps, late_p99_ms}]  # concurrent lines (measure_lines)

``lines`` is what the machine carries through many lines at once: a ``star``
of 2m hosts whose links have a 5 ms line each way and no rate limit, m TCP
flows at once (h1 -> h2, h3 -> h4, ...), each through two line directions;
``total_bps`` is the bits per second summed over the lines that carry data
(twice the flows' goodput). The hosts build packets of one MTU
(``gso_bytes``), which is what they send on a scaled lab: hosts cap GSO at
100 us of the slowest shaped rate
(:func:`testbed.shaping.htb.host_gso_max_bytes`), one MTU below 120 Mbit/s
at MTU 1500 and 720 Mbit/s at MTU 9000, and a line's cost is mostly per
packet. With 64 KiB GSO packets the same bench carried several times more
and varied twice over between runs (16 lines: 7.8 to 17 Gbit/s); with MTU
packets it is steady (16 lines, MTU 9000: 6.8-7.1 Gbit/s; MTU 1500:
1.3-1.6). :func:`lines_capacity_bps` reads it for any number of lines (the
nearest measured count at or above; beyond the largest, that one's aggregate,
scaled down by the count). A cache older than :data:`MAX_AGE_S` is measured
again.

The result is cached in ``<state_dir>/capacity.json`` (``/run/testbed``, a
tmpfs: a reboot forgets it) so a later run can reuse it without traffic;
:func:`load_cached` only returns it when the kernel, CPU count and testbed
version still match. :func:`check_scenario_capacity` and :func:`render` are
pure functions of a capacity document.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

from testbed import __version__
from testbed.errors import InputError, RunError
from testbed.lab import state

__all__ = [
    "SCHEMA",
    "WARN_FRACTION",
    "CACHE_FILE",
    "machine_fingerprint",
    "cache_path",
    "load_cached",
    "save_cached",
    "measure_capacity",
    "get_capacity",
    "check_scenario_capacity",
    "max_configured_rate_bps",
    "render",
    "measure_lines",
    "lines_capacity_bps",
    "MAX_AGE_S",
]

SCHEMA = "testbed.capacity/3"
CACHE_FILE = "capacity.json"
#: Configured traffic above this share of the measured capacity gets a warning.
WARN_FRACTION = 0.8
DEFAULT_DELAY_MS = 20.0
DEFAULT_STREAMS = 2
MAX_AGE_S = 7 * 24 * 3600.0
LINE_FLOWS = (1, 2, 4, 8)  # concurrent flows: 2, 4, 8, 16 lines
LINE_MTUS = (1500, 9000)
LINE_DELAY_MS = 5.0
IPERF_PORT = 5291
# The hosts' TCP windows must not be the limit at a 40 ms RTT (per namespace only).
_BIG_BUF = "4096 131072 67108864"
_HOST_SYSCTLS = {"net.ipv4.tcp_rmem": _BIG_BUF, "net.ipv4.tcp_wmem": _BIG_BUF}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def machine_fingerprint() -> Dict[str, Any]:
    """What a cached capacity belongs to: kernel release, CPU count, testbed version."""
    return {"kernel": platform.release(), "cpus": os.cpu_count() or 0, "testbed": __version__}


def cache_path() -> Path:
    return state.state_dir() / CACHE_FILE


def _load_avg_1m() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def load_cached(path: Optional[Path] = None,
                machine: Optional[Mapping[str, Any]] = None) -> Optional[dict]:
    """The cached capacity if it was measured on this machine as it is now, else None."""
    path = path or cache_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return None
    if doc.get("machine") != dict(machine or machine_fingerprint()):
        return None
    if not isinstance(doc.get("delay_line_bps"), (int, float)) or not doc.get("lines"):
        return None
    try:
        age = (_dt.datetime.now(_dt.timezone.utc)
               - _dt.datetime.fromisoformat(doc["measured_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None
    if age > MAX_AGE_S:
        return None
    return doc


def save_cached(doc: Mapping[str, Any], path: Optional[Path] = None) -> Path:
    """Write ``doc`` atomically (temporary file renamed into place)."""
    path = path or cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(dict(doc), indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _tcp_bps(lab, seconds: float, streams: int) -> float:
    from testbed.measure import RUNNERS

    result = RUNNERS["tcp"].run(lab.node("h1"), lab.node("h2"), duration_s=seconds,
                                streams=streams, port=IPERF_PORT)
    return result["throughput_mbps"] * 1e6


def _forward_queue(stats: Iterable[dict]) -> dict:
    for doc in stats:
        for queue in doc.get("queues", []):
            if queue.get("direction") == "forward":
                return queue
    return {}


def _cpu_s(stats: Iterable[dict]) -> float:
    return sum(float(doc.get("cpu_s") or 0.0) for doc in stats)


def measure_capacity(seconds: float = 3, name: str = "cap-probe",
                     delay_ms: float = DEFAULT_DELAY_MS, streams: int = DEFAULT_STREAMS,
                     backend: str = "auto") -> dict:
    """Measure the delay line's TCP capacity here (needs root; takes about 2 x seconds + 5 s).

    Creates labs ``<name>-raw`` and ``<name>-line`` (the name must leave room
    for the suffix) and always destroys them.
    """
    from testbed.lab.lab import Lab

    if not 0 < seconds <= 60:
        raise InputError("seconds", f"must be in (0, 60], got {seconds!r}")
    if not 1 <= streams <= 16:
        raise InputError("streams", f"must be 1 to 16, got {streams!r}")
    if not 0 < delay_ms <= 1000:
        raise InputError("delay_ms", f"must be in (0, 1000], got {delay_ms!r}")
    load = _load_avg_1m()
    with Lab.create("pair", name=f"{name}-raw", links={"link": {}},
                    host_sysctls=_HOST_SYSCTLS) as lab:
        raw_bps = _tcp_bps(lab, seconds, streams)
    with Lab.create("pair", name=f"{name}-line", backend=backend,
                    links={"link": {"delay": f"{delay_ms:g}ms"}},
                    host_sysctls=_HOST_SYSCTLS) as lab:
        before = lab.delay_line_stats()
        line_bps = _tcp_bps(lab, seconds, streams)
        lab.check()  # a line that died would have carried nothing, not "slowly"
        after = lab.delay_line_stats()
        used_backend = lab.backend
    if used_backend == "userspace" and not after:
        raise RunError("capacity probe: the userspace delay line reported no statistics")
    late = _forward_queue(after).get("late_ms", {}).get("p99")
    carried_gb = line_bps * seconds / 8 / 1e9
    cpu_s = _cpu_s(after) - _cpu_s(before)
    return {
        "schema": SCHEMA,
        "machine": machine_fingerprint(),
        "measured_at": _now(),
        "seconds": seconds,
        "streams": streams,
        "delay_ms": delay_ms,
        "backend": used_backend,
        "load_avg_1m": load,
        "delay_line_bps": round(line_bps),
        "late_p99_ms": late,
        "raw_veth_bps": round(raw_bps),
        "cpu_s_per_gb": round(cpu_s / carried_gb, 3) if after and carried_gb > 0 else None,
    }


def get_capacity(refresh: bool = False, seconds: float = 3, name: str = "cap-probe",
                 progress=lambda _m: None) -> dict:
    """The cached capacity of this machine, measured (and cached) when missing or stale."""
    if not refresh:
        cached = load_cached()
        if cached is not None:
            return cached
    progress("measuring this machine's emulation capacity (about a minute; cached in "
             f"{cache_path()})")
    doc = measure_capacity(seconds=seconds, name=name)
    doc["lines"] = measure_lines(seconds=seconds, name=name)
    save_cached(doc)
    return doc


def _concurrent_tcp(lab, flows: int, seconds: float) -> List[float]:
    """``flows`` iperf3 flows at once, h(2i-1) -> h(2i); their goodputs (bit/s)."""
    import threading

    from testbed.measure import RUNNERS

    out: List[Optional[float]] = [None] * flows
    errors: List[BaseException] = []

    def one(i: int) -> None:
        try:
            r = RUNNERS["tcp"].run(lab.node(f"h{2 * i + 1}"), lab.node(f"h{2 * i + 2}"),
                                   duration_s=seconds, streams=1, port=IPERF_PORT + 1 + i)
            out[i] = r["throughput_mbps"] * 1e6
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(flows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [float(x) for x in out]


def _cap_host_gso(lab, gso_bytes: int) -> None:
    """Hosts build packets of at most ``gso_bytes`` (what a scaled lab makes them do)."""
    from testbed.lab.build import open_ns

    for node in lab.plan.hosts():
        with open_ns(node.netns) as ns:
            for intf in node.intfs:
                ns.link("set", ifname=intf.name, gso_max_size=gso_bytes)


def measure_lines(seconds: float = 3, name: str = "cap-probe", flows=LINE_FLOWS,
                  mtus=LINE_MTUS, backend: str = "auto") -> List[dict]:
    """What the delay lines carry at once, by number of lines and MTU, in packets of
    one MTU (module docstring)."""
    from testbed.lab.lab import Lab

    points = []
    for mtu in mtus:
        for m in flows:
            with Lab.create("star", f"{name}-l", params={"hosts": 2 * m}, backend=backend,
                            links={"fabric": {"delay": f"{LINE_DELAY_MS:g}ms", "mtu": mtu}},
                            host_sysctls=_HOST_SYSCTLS) as lab:
                _cap_host_gso(lab, mtu)
                goodputs = _concurrent_tcp(lab, m, seconds)
                lab.check()
                late = [q.get("late_ms", {}).get("p99") for d in lab.delay_line_stats()
                        for q in d.get("queues", []) if (q.get("received") or 0) > 1000]
            points.append({"lines": 2 * m, "mtu": mtu, "gso_bytes": mtu, "flows": m,
                           "total_bps": round(2 * sum(goodputs)),
                           "late_p99_ms": max((x for x in late if x is not None), default=None)})
    return points


def lines_capacity_bps(doc: Mapping[str, Any], lines: int, mtu: int = 1500) -> float:
    """Bits/s through ``lines`` concurrent lines: the nearest measured count at or above it
    (packets of the nearest measured MTU at or below ``mtu``); beyond the largest count,
    its aggregate scaled down by the count (more lines share the same cores, and worse)."""
    points = [p for p in doc.get("lines") or [] if p.get("total_bps")]
    if not points:
        raise InputError("capacity.lines", "no measured line capacity (run testbed doctor --bench)")
    mtus = sorted({p["mtu"] for p in points})
    use = max([m for m in mtus if m <= mtu] or [mtus[0]])
    pts = sorted((p for p in points if p["mtu"] == use), key=lambda p: p["lines"])
    for p in pts:
        if p["lines"] >= lines:
            return float(p["total_bps"])
    last = pts[-1]
    return float(last["total_bps"]) * last["lines"] / max(lines, 1)


def max_configured_rate_bps(rates_bps: Iterable[Optional[int]]) -> Optional[int]:
    """The highest rate among links that carry traffic; None if any link is unlimited."""
    top = 0
    for rate in rates_bps:
        if not rate:
            return None
        top = max(top, int(rate))
    return top or None


def _gbit(bps: float) -> str:
    return f"{bps / 1e9:.2f} Gbit/s"


def check_scenario_capacity(configured_rate_bps: Optional[int],
                            capacity: Optional[Mapping[str, Any]], scale: float = 1.0) -> Optional[str]:
    """A warning when configured traffic exceeds ``WARN_FRACTION`` of the capacity, else None.

    ``scale``: the K the lab runs at; its links are shaped at the configured rate / K.

    ``configured_rate_bps`` None (or 0) means an unlimited link: TCP then runs
    at whatever the emulator carries, which is always worth a warning. No
    capacity known (None) or a netem backend (the kernel does the delaying at
    any rate the machine forwards) gives no warning.
    """
    if capacity is None or capacity.get("backend") == "netem":
        return None
    cap = capacity.get("delay_line_bps")
    if not isinstance(cap, (int, float)) or isinstance(cap, bool) or cap <= 0:
        raise InputError("capacity.delay_line_bps", f"must be a positive number, got {cap!r}")
    if configured_rate_bps is not None and (
            isinstance(configured_rate_bps, bool) or configured_rate_bps < 0):
        raise InputError("configured_rate_bps", f"must be >= 0, got {configured_rate_bps!r}")
    where = (f"the delay line carried {_gbit(cap)} of TCP on this machine "
             f"({capacity.get('machine', {}).get('cpus', '?')} CPUs, measured "
             f"{capacity.get('measured_at', '?')})")
    if not configured_rate_bps:
        return (f"a link with delay has no rate limit: TCP will run at what the emulator "
                f"carries, not at a link rate; {where}")
    shaped = configured_rate_bps / scale
    if shaped > WARN_FRACTION * cap:
        at = "" if scale == 1 else f", shaped at {_gbit(shaped)} (scale {scale:g}),"
        return (f"configured {_gbit(configured_rate_bps)}{at} is above {WARN_FRACTION:.0%} of what "
                f"this machine emulates faithfully: {where}; throughput and delay figures "
                f"may be the emulator's limit, not the link's")
    return None


def render(doc: Mapping[str, Any]) -> str:
    """The capacity as a few readable lines (for ``testbed doctor --bench``)."""
    machine = doc.get("machine", {})
    late = doc.get("late_p99_ms")
    cpu = doc.get("cpu_s_per_gb")
    raw = doc.get("raw_veth_bps") or 0
    line = doc.get("delay_line_bps") or 0
    ratio = f" ({line / raw:.0%} of raw veth)" if raw else ""
    lines = [
        f"emulation capacity ({doc.get('backend', '?')} backend, kernel {machine.get('kernel', '?')}, "
        f"{machine.get('cpus', '?')} CPUs, load {doc.get('load_avg_1m', '?')}, "
        f"measured {doc.get('measured_at', '?')}):",
        f"  TCP through a {doc.get('delay_ms', '?')} ms line, {doc.get('streams', '?')} streams: "
        f"{_gbit(line)}{ratio}",
        f"  raw veth: {_gbit(raw)}",
        "  line lateness p99 at that load: " + ("-" if late is None else f"{late:.3f} ms"),
        "  line CPU per GB carried: " + ("-" if cpu is None else f"{cpu:.3f} s"),
        f"  scenarios warn above {WARN_FRACTION:.0%} of it: {_gbit(WARN_FRACTION * line)}",
    ]
    for p in doc.get("lines") or []:
        late = p.get("late_p99_ms")
        lines.append(f"  {p['lines']:>3} lines at once, MTU {p['mtu']} (packets of one MTU): "
                     f"{_gbit(p['total_bps'])} in all"
                     + ("" if late is None else f", lateness p99 {late:.3f} ms"))
    return "\n".join(lines)
