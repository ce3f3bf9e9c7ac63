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
from typing import Any, Dict, Iterable, Mapping, Optional

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
]

SCHEMA = "testbed.capacity/1"
CACHE_FILE = "capacity.json"
#: Configured traffic above this share of the measured capacity gets a warning.
WARN_FRACTION = 0.8
DEFAULT_DELAY_MS = 20.0
DEFAULT_STREAMS = 2
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
    if not isinstance(doc.get("delay_line_bps"), (int, float)):
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


def get_capacity(refresh: bool = False, seconds: float = 3, name: str = "cap-probe") -> dict:
    """The cached capacity of this machine, measured (and cached) when missing or stale."""
    if not refresh:
        cached = load_cached()
        if cached is not None:
            return cached
    doc = measure_capacity(seconds=seconds, name=name)
    save_cached(doc)
    return doc


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
                            capacity: Optional[Mapping[str, Any]]) -> Optional[str]:
    """A warning when configured traffic exceeds ``WARN_FRACTION`` of the capacity, else None.

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
    if configured_rate_bps > WARN_FRACTION * cap:
        return (f"configured {_gbit(configured_rate_bps)} is above {WARN_FRACTION:.0%} of what "
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
    return "\n".join(lines)
