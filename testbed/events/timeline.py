"""Throughput and RTT over time while events change the lab: outage and recovery.

:func:`run_timeline` measures from ``src`` to ``dst`` for ``duration_s``
while a :class:`~testbed.events.scheduler.Scheduler` fires the events:

* TCP: ``iperf3 -R`` with the client in ``dst`` and the server in ``src``,
  so the data flows ``src -> dst`` and the client's per-interval figures
  (``-i interval_s``, JSON) are what ``dst`` *received* -- a sender's figures
  would go on counting bytes written into its socket buffer for a while
  after a link is cut. ``--rcv-timeout`` is set longer than the step, so the
  receiving client waits out any outage inside it; TCP retransmits through
  the outage (no ``--snd-timeout``: TCP_USER_TIMEOUT stays unset) and the
  connection survives. Should the client end early anyway (refused
  connection, an error), a new server and client are started for the rest
  of the step and their series are stitched; time no client covered counts
  as zero throughput (``"gap": true``).
* RTT: ``ping -D -O -i ping_interval_s`` in ``src``; a probe with no reply
  is ``rtt_ms: null`` at the time it was sent.

Time zero is the start of the flow: the moment the first client's data
connection is established, seen by polling the TCP table of the client's
namespace (``/proc/<pid>/net/tcp``: two established connections to the
server's port) every few milliseconds. The events fire at ``at_s`` from it
(monotonic clock) and record when they really did, so an event at 2 s has
2 s of flow before it however long the client took to start (a slow
machine: a second or more). iperf3 reports interval times from its own test
start, after the control connection, the parameter exchange and the data
connection; the test starts within about one RTT of the data connection,
so its intervals are placed from that moment too. There is no fixed
deadline for it: the wait lasts as long as the client runs (its
``--connect-timeout`` bounds the connection). A client that ends without
being seen connected puts time zero at its start plus
:data:`DEFAULT_SETUP_S`, and the step goes on (a new client is started).

The analysis (:func:`analyse`, pure) gives, for each disruptive event
(``link_down``, ``set_profile``, ``failover``), with ``t_e`` its actual time
and ``t_next`` the next action's (or the end of the step):

* ``throughput_mbps`` / ``rtt_ms`` ``before`` (median over
  ``[t_e - baseline_s, t_e)``), ``during`` (``[t_e, t_next)``) and ``after``
  (``[t_next, t_next + baseline_s)``);
* ``outage_s``: the longest run of intervals in which no byte arrived
  (``zero_below_mbps`` is 0: a slower working path, such as a transit
  backup after a failover, is never counted as an outage) that overlaps
  ``[t_e, t_next)``, counted from ``t_e`` at the earliest to the run's true
  end (``outage_start_s``, ``outage_end_s``); ``probe_outage_s`` the same
  with lost probes (from the first lost probe's send to the next answered
  one's);
* ``time_to_recover_s``: from ``t_e`` to the first interval from which
  throughput stays at least ``recover_fraction`` of the reference for
  ``hold_s``; the reference is the ``before`` median, or -- for an event
  fired while traffic was already stopped, such as a failover after a cut
  -- the median the event settles at after its outage. ``None``: never
  within the step.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import json
import math
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from testbed.errors import InputError, RunError, TestbedError, ToolError
from testbed.events.controller import EventController
from testbed.events.model import DISRUPTIVE, expand_events, parse_events
from testbed.events.scheduler import Scheduler
from testbed.lab.node import Node
from testbed.measure._common import positive_int, positive_number, require_tool, stop_process
from testbed.measure.iperf import IperfServer

__all__ = ["run_timeline", "analyse", "parse_ping_lines", "iperf_series", "fill_gaps",
           "zero_runs", "lost_runs", "count_established", "established_to", "DEFAULT_SETUP_S"]

MAX_DURATION_S = 3600.0
MIN_INTERVAL_S = 0.1  # iperf3's shortest reporting interval
MIN_PING_INTERVAL_S = 0.002  # iputils' floor for root
DEFAULT_SETUP_S = 0.03
CONNECT_POLL_S = 0.002
END_GRACE_S = 10.0
PING_TAIL_S = 1.0  # probes keep going this long past the end, so the last ones can answer
NO_BYTES_MBPS = 0.0  # an interval at or below this carried nothing: an outage
POLL_S = 0.05
RESTART_CONNECT_TIMEOUT_MS = 1000

_CC_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}\Z")
_PING_REPLY = re.compile(
    r"^\[(?P<ts>\d+\.\d+)\] \d+ bytes from [^\s:]+: icmp_seq=(?P<seq>\d+) ttl=\d+ "
    r"time=(?P<rtt>[\d.]+) ms")
_PING_NO_ANSWER = re.compile(r"^\[(?P<ts>\d+\.\d+)\] no answer yet for icmp_seq=(?P<seq>\d+)")


# ------------------------------------------------------------------ parsing


def parse_ping_lines(text: str, wall0: float, interval_s: float) -> List[dict]:
    """``ping -D -O`` output as probes ``{t_s, seq, rtt_ms}`` in send order.

    ``t_s`` is the send time on the timeline (``wall0`` = wall clock at time
    zero): reply time minus RTT for answered probes; for unanswered ones
    (``rtt_ms`` None) interpolated between the nearest answered neighbours
    by sequence number (ping sends every ``interval_s``). A duplicate reply
    counts once.
    """
    sent: Dict[int, float] = {}
    rtts: Dict[int, float] = {}
    seen = set()
    for raw in text.splitlines():
        line = raw.strip()
        match = _PING_REPLY.match(line)
        if match:
            seq = int(match["seq"])
            seen.add(seq)
            if seq not in rtts:
                rtt = float(match["rtt"])
                rtts[seq] = rtt
                sent[seq] = float(match["ts"]) - rtt / 1000.0 - wall0
            continue
        match = _PING_NO_ANSWER.match(line)
        if match:
            seen.add(int(match["seq"]))
    if not seen:
        return []
    known = sorted(sent)
    out = []
    for seq in range(min(seen), max(seen) + 1):
        if seq in sent:
            t = sent[seq]
        elif known:
            i = bisect.bisect_left(known, seq)  # seq is not in known: neighbours i-1 and i
            lower = known[i - 1] if i else None
            upper = known[i] if i < len(known) else None
            if lower is not None and upper is not None:
                t = sent[lower] + (sent[upper] - sent[lower]) * (seq - lower) / (upper - lower)
            elif lower is not None:
                t = sent[lower] + (seq - lower) * interval_s
            else:
                t = sent[upper] - (upper - seq) * interval_s
        else:
            continue  # no reply at all: no time to hang the probes on
        out.append({"t_s": round(t, 4), "seq": seq, "rtt_ms": rtts.get(seq)})
    return out


def iperf_series(doc: dict, offset_s: float, scale: float = 1.0) -> List[dict]:
    """Intervals of an iperf3 ``-J`` document as ``{t_s, dt_s, mbps}`` on the timeline."""
    out = []
    for entry in doc.get("intervals") or []:
        total = entry.get("sum") or {}
        if "bits_per_second" not in total or "start" not in total or "end" not in total:
            continue
        start, end = float(total["start"]), float(total["end"])
        if end <= start:
            continue
        out.append({"t_s": round(offset_s + start, 4), "dt_s": round(end - start, 4),
                    "mbps": round(float(total["bits_per_second"]) / 1e6 * scale, 3)})
    return out


def fill_gaps(series: List[dict], duration_s: float, interval_s: float) -> List[dict]:
    """Zero-throughput intervals (``gap: true``) where no client reported, within the step."""
    items = sorted(series, key=lambda s: s["t_s"])
    out: List[dict] = []
    cursor = 0.0
    tolerance = 0.5 * interval_s
    for item in items + [{"t_s": duration_s, "dt_s": 0.0, "end": True}]:
        while item["t_s"] - cursor > tolerance:
            dt = min(interval_s, item["t_s"] - cursor)
            out.append({"t_s": round(cursor, 4), "dt_s": round(dt, 4), "mbps": 0.0, "gap": True})
            cursor += dt
        if item.get("end"):
            break
        out.append(item)
        cursor = max(cursor, item["t_s"] + item["dt_s"])
    return out


# ------------------------------------------------------------------ analysis


def zero_runs(series: Sequence[dict], zero_below_mbps: float) -> List[tuple]:
    """(start_s, end_s) of each run of consecutive intervals below the threshold."""
    runs = []
    start = None
    end = None
    for s in sorted(series, key=lambda x: x["t_s"]):
        if s["mbps"] <= zero_below_mbps:
            if start is None:
                start = s["t_s"]
            end = round(s["t_s"] + s["dt_s"], 4)
        elif start is not None:
            runs.append((start, end))
            start = None
    if start is not None:
        runs.append((start, end))
    return runs


def lost_runs(probes: Sequence[dict]) -> List[tuple]:
    """(first lost probe's send time, next answered probe's send time or None) per run."""
    runs = []
    start = None
    for p in sorted(probes, key=lambda x: x["seq"]):
        if p["rtt_ms"] is None:
            if start is None:
                start = p["t_s"]
        elif start is not None:
            runs.append((start, p["t_s"]))
            start = None
    if start is not None:
        runs.append((start, None))
    return runs


def _median(values: List[float]) -> Optional[float]:
    return round(median(values), 3) if values else None


def _mid(s: dict) -> float:
    return s["t_s"] + s["dt_s"] / 2.0


def _window(series, a: float, b: float, key: str) -> List[float]:
    if key == "mbps":
        return [s["mbps"] for s in series if a <= _mid(s) < b]
    return [p["rtt_ms"] for p in series if a <= p["t_s"] < b and p["rtt_ms"] is not None]


def _longest(runs, t_e: float, t_next: float, end_default: float):
    best = (0.0, None, None)
    for start, end in runs:
        end = end_default if end is None else end
        if end <= t_e or start >= t_next:
            continue
        length = end - max(start, t_e)
        if length > best[0]:
            best = (round(length, 3), round(max(start, t_e), 3), round(end, 3))
    return best


def _recovery(series, t_e: float, reference: Optional[float], fraction: float,
              hold_s: float, end_s: float) -> Optional[float]:
    if not reference or reference <= 0:
        return None
    floor = fraction * reference
    after = sorted((s for s in series if s["t_s"] >= t_e - 1e-9), key=lambda s: s["t_s"])
    for i, s in enumerate(after):
        t_r = s["t_s"]
        if t_r + hold_s > end_s + 1e-9:
            return None
        ok = True
        for later in after[i:]:
            if later["t_s"] >= t_r + hold_s - 1e-9:
                break
            if later["mbps"] < floor:
                ok = False
                break
        if ok:
            return round(t_r - t_e, 3)
    return None


def analyse(throughput: Sequence[dict], probes: Sequence[dict], records: Sequence[dict],
            duration_s: float, recover_fraction: float = 0.8, hold_s: float = 1.0,
            baseline_s: float = 2.0) -> dict:
    """Outage and recovery per disruptive event (see the module docstring).

    ``records`` are the scheduler's (``kind``, ``actual_s`` ...); returns
    ``{"zero_below_mbps": x, "events": [...]}``.
    """
    zero_below = NO_BYTES_MBPS  # no bytes, whatever the old path's rate was
    zruns = zero_runs(throughput, zero_below)
    lruns = lost_runs(probes)
    fired = sorted((r for r in records if "error" not in r), key=lambda r: r["actual_s"])
    out = []
    for i, rec in enumerate(fired):
        if rec["kind"] not in DISRUPTIVE:
            continue
        t_e = rec["actual_s"]
        t_next = next((r["actual_s"] for r in fired[i + 1:] if r["actual_s"] > t_e), duration_s)
        previous = max((r["actual_s"] for r in fired[:i] if r["actual_s"] < t_e), default=0.0)
        a = max(previous, t_e - baseline_s, 0.0)
        before = _median(_window(throughput, a, t_e, "mbps"))
        during = _median(_window(throughput, t_e, t_next, "mbps"))
        after = _median(_window(throughput, t_next, t_next + baseline_s, "mbps")) \
            if t_next < duration_s else None
        outage_s, o_start, o_end = _longest(zruns, t_e, t_next, duration_s)
        probe_s, _p_start, _p_end = _longest(lruns, t_e, t_next, duration_s)
        reference = before
        if reference is None or reference <= zero_below:
            settled = _window(throughput, o_end if o_end is not None else t_e, t_next, "mbps")
            reference = _median([v for v in settled if v > zero_below])
        lost = sum(1 for p in probes if t_e <= p["t_s"] < t_next and p["rtt_ms"] is None)
        out.append({
            "event": rec.get("event"), "kind": rec["kind"], "link": rec.get("link"),
            "label": rec.get("label"), "actual_s": t_e, "window_end_s": round(t_next, 3),
            "throughput_mbps": {"before": before, "during": during, "after": after},
            "rtt_ms": {"before": _median(_window(probes, a, t_e, "rtt")),
                       "during": _median(_window(probes, t_e, t_next, "rtt")),
                       "after": _median(_window(probes, t_next, t_next + baseline_s, "rtt"))
                       if t_next < duration_s else None},
            "outage_s": outage_s, "outage_start_s": o_start, "outage_end_s": o_end,
            "probe_outage_s": probe_s, "probes_lost": lost,
            "reference_mbps": reference,
            "time_to_recover_s": _recovery(throughput, t_e, reference, recover_fraction,
                                           hold_s, duration_s),
        })
    return {"zero_below_mbps": zero_below, "events": out}


# ------------------------------------------------------------------ running


def _client_argv(src_ip: str, port: int, duration_s: float, interval_s: float,
                 connect_timeout_ms: int, rcv_timeout_ms: int,
                 congestion: Optional[str] = None) -> list:
    argv = ["iperf3", "-c", src_ip, "-p", str(port), "-R", "-J", "-t", f"{duration_s:.3f}",
            "-i", f"{interval_s:g}", "--connect-timeout", str(connect_timeout_ms),
            "--rcv-timeout", str(rcv_timeout_ms)]
    if congestion is not None:
        argv += ["-C", congestion]  # the sender (the server, -R) uses it too
    return argv


def _ping_argv(dst_ip: str, interval_s: float, deadline_s: float) -> list:
    return ["ping", "-n", "-D", "-O", "-i", f"{interval_s:g}", "-W", "1",
            "-w", str(int(math.ceil(deadline_s))), dst_ip]


class _Attempt:
    """One iperf3 client (and its server) covering part of the step."""

    def __init__(self, number: int, port: int, out_path: Path):
        self.number = number
        self.port = port
        self.out_path = out_path
        self.started_mono = 0.0
        self.connected_mono: Optional[float] = None
        self.proc: Optional[subprocess.Popen] = None
        self.server: Optional[IperfServer] = None
        self.ended_s: Optional[float] = None
        self._watch: Optional[threading.Thread] = None

    def watch_connect(self) -> None:
        """Note when the data connection is up (a thread polling the namespace's TCP table)."""
        def poll() -> None:
            while self.proc is not None and self.proc.poll() is None:
                if established_to(self.proc.pid, self.port) >= 2:
                    self.connected_mono = time.monotonic()
                    return
                time.sleep(CONNECT_POLL_S)

        self._watch = threading.Thread(target=poll, name="timeline-connect", daemon=True)
        self._watch.start()

    def record(self, t0: float, scale: float) -> dict:
        if self._watch is not None:
            self._watch.join(1.0)
        text = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        try:
            doc = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            doc = {"error": f"output is not JSON: {text.strip()[:120]}"}
        if self.connected_mono is not None:
            offset, how = self.connected_mono - t0, "data connection established"
        else:
            offset, how = self.started_mono - t0 + DEFAULT_SETUP_S, "default setup time"
        return {"attempt": self.number, "port": self.port,
                "started_s": round(self.started_mono - t0, 4), "offset_s": round(offset, 4),
                "offset_from": how, "ended_s": self.ended_s,
                "returncode": None if self.proc is None else self.proc.returncode,
                "error": doc.get("error"), "series": iperf_series(doc, offset, scale)}


def count_established(table: str, port: int) -> int:
    """Established connections to remote ``port`` in a ``/proc/net/tcp`` table's text."""
    count = 0
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "01":
            try:
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
            except (IndexError, ValueError):
                continue
    return count


def established_to(pid: int, port: int) -> int:
    """Established TCP connections to remote ``port`` in the network namespace of ``pid``."""
    count = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as fh:
                count += count_established(fh.read(), port)
        except OSError:
            continue
    return count


def _node(lab, value: Union[str, Node]) -> Node:
    return value if isinstance(value, Node) else lab.node(value)


def _check_options(duration_s, interval_s, ping_interval_s, recover_fraction, hold_s, baseline_s, port):
    positive_number("timeline.duration_s", duration_s)
    if duration_s > MAX_DURATION_S:
        raise InputError("timeline.duration_s", f"at most {MAX_DURATION_S:g} s")
    positive_number("timeline.interval_s", interval_s)
    if interval_s < MIN_INTERVAL_S:
        raise InputError("timeline.interval_s", f"iperf3 reports at most every {MIN_INTERVAL_S:g} s")
    if interval_s > duration_s / 2:
        raise InputError("timeline.interval_s", "must be at most half of duration_s")
    positive_number("timeline.ping_interval_s", ping_interval_s)
    if ping_interval_s < MIN_PING_INTERVAL_S:
        raise InputError("timeline.ping_interval_s", f"at least {MIN_PING_INTERVAL_S:g} s")
    positive_number("timeline.recover_fraction", recover_fraction)
    if recover_fraction > 1:
        raise InputError("timeline.recover_fraction", "must be at most 1")
    positive_number("timeline.hold_s", hold_s)
    positive_number("timeline.baseline_s", baseline_s)
    positive_int("timeline.port", port, maximum=65000)


def run_timeline(lab, src: Union[str, Node], dst: Union[str, Node], duration_s: float,
                 interval_s: float = 0.1, events: Any = (),
                 progress: Optional[Callable[[str], None]] = None, *,
                 ping_interval_s: float = 0.05, port: int = 5301,
                 recover_fraction: float = 0.8, hold_s: float = 1.0,
                 baseline_s: float = 2.0, congestion: Optional[str] = None) -> dict:
    """Throughput and RTT ``src -> dst`` every ``interval_s`` while ``events`` fire.

    ``events``: a list of :class:`~testbed.events.model.Event` or their mappings.
    ``congestion``: the TCP congestion control of the flow (iperf3 ``-C``;
    None: the hosts' default).
    Every change an event makes is undone before this returns or raises.
    Returns the timeline document (docs/events.md, "Timeline output").
    """
    progress = progress or (lambda _m: None)
    _check_options(duration_s, interval_s, ping_interval_s, recover_fraction, hold_s,
                   baseline_s, port)
    if congestion is not None and not (isinstance(congestion, str) and _CC_RE.match(congestion)):
        raise InputError("timeline.congestion", f"{congestion!r} is not a congestion control name")
    src_node, dst_node = _node(lab, src), _node(lab, dst)
    if not src_node.ip or not dst_node.ip:
        raise InputError("timeline", f"{src_node.name} and {dst_node.name} need addresses")
    parsed = parse_events(events)
    controller = EventController(lab)
    controller.check(parsed, duration_s)
    actions = expand_events(parsed)
    for tool, hint in (("iperf3", "apt-get install iperf3"), ("ping", "apt-get install iputils-ping"),
                       ("ss", "apt-get install iproute2")):
        require_tool(tool, hint)
    scale = float(getattr(lab, "scale", 1.0))
    rcv_timeout_ms = int((duration_s + END_GRACE_S + 30.0) * 1000)
    workdir = Path(tempfile.mkdtemp(prefix="tb-timeline-"))
    scheduler = Scheduler(actions, controller.apply)
    attempts: List[_Attempt] = []
    ping_proc: Optional[subprocess.Popen] = None
    started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = wall0 = 0.0
    try:
        ping_out = (workdir / "ping.txt").open("w")
        ping_proc = src_node.popen(
            _ping_argv(dst_node.ip, ping_interval_s, duration_s + PING_TAIL_S + 5.0),
            stdout=ping_out, stderr=subprocess.STDOUT)
        ping_out.close()

        def start_attempt(remaining_s: float, connect_ms: int) -> _Attempt:
            number = len(attempts)
            attempt = _Attempt(number, port + number, workdir / f"iperf-{number}.json")
            # one test, in the source node (it sends, -R)
            attempt.server = IperfServer(src_node, port=attempt.port)
            attempts.append(attempt)
            attempt.server.__enter__()
            with attempt.out_path.open("w") as out:
                attempt.started_mono = time.monotonic()
                attempt.proc = dst_node.popen(
                    _client_argv(src_node.ip, attempt.port, remaining_s, interval_s, connect_ms,
                                 rcv_timeout_ms, congestion), stdout=out, stderr=subprocess.STDOUT)
            attempt.watch_connect()
            return attempt

        first = start_attempt(duration_s, 3000)
        t0 = _flow_start(first)
        wall0 = time.time() - (time.monotonic() - t0)
        scheduler.start(t0)
        progress(f"timeline {src_node.name} -> {dst_node.name}: {duration_s:g} s, "
                 f"{len(actions)} event(s)")
        reported = 0
        end = t0 + duration_s
        while True:
            now = time.monotonic()
            for rec in scheduler.records[reported:]:
                progress(f"t={rec['actual_s']:.2f}s {rec['label']}"
                         + (f": FAILED {rec['error']}" if "error" in rec else ""))
            reported = len(scheduler.records)
            if scheduler.error is not None:
                break
            current = attempts[-1]
            if current.proc.poll() is not None:
                if current.ended_s is None:
                    current.ended_s = now - t0
                remaining = end - now
                if remaining < 2 * interval_s:
                    break
                _finish_server(current)
                progress(f"t={now - t0:.2f}s iperf3 ended early (exit {current.proc.returncode}); "
                         "restarting for the rest of the step")
                start_attempt(remaining, RESTART_CONNECT_TIMEOUT_MS)
                continue
            if now > end + END_GRACE_S:
                break
            try:
                current.proc.wait(timeout=POLL_S)  # returns the moment the client ends
            except subprocess.TimeoutExpired:
                pass
        if scheduler.error is None:
            # the probes run on past the end so the last ones can be answered
            tail = t0 + duration_s + PING_TAIL_S - time.monotonic()
            if tail > 0:
                time.sleep(tail)
    finally:
        warnings: List[str] = []
        _try(warnings, scheduler.stop)
        for attempt in attempts:
            _try(warnings, lambda a=attempt: _stop_client(a, t0))
            _try(warnings, lambda a=attempt: _finish_server(a))
        if ping_proc is not None:
            _try(warnings, lambda: _stop_ping(ping_proc))
        try:
            controller.restore()
        finally:
            runs = [a.record(t0, scale) for a in attempts]
            ping_path = workdir / "ping.txt"
            ping_text = ping_path.read_text(errors="replace") if ping_path.exists() else ""
            shutil.rmtree(workdir, ignore_errors=True)
    error = scheduler.error
    if error is not None:
        if isinstance(error, TestbedError):
            raise error
        raise RunError(f"timeline event failed: {error}") from error
    doc = _document(src_node, dst_node, duration_s, interval_s, ping_interval_s, scale,
                    started_at, wall0, runs, ping_text, scheduler.records,
                    recover_fraction, hold_s, baseline_s, congestion)
    doc["warnings"] = warnings
    return doc


def _flow_start(attempt: _Attempt) -> float:
    """Time zero of the step: when ``attempt``'s data connection is up (the flow's start).

    Waited for as long as the client runs; a client that ends unseen gives its
    start plus :data:`DEFAULT_SETUP_S` (the step's loop starts a new one).
    """
    while attempt.connected_mono is None and attempt.proc.poll() is None:
        time.sleep(CONNECT_POLL_S)
    if attempt.connected_mono is not None:
        return attempt.connected_mono
    return attempt.started_mono + DEFAULT_SETUP_S


def _try(errors: List[str], fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:  # cleanup goes on; the first problem is kept for the record
        errors.append(str(exc))


def _stop_client(attempt: _Attempt, t0: float) -> None:
    """SIGTERM (iperf3 then prints what it has, as JSON), then SIGKILL; by pid."""
    proc = attempt.proc
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            stop_process(proc)
    if attempt.ended_s is None:
        attempt.ended_s = time.monotonic() - t0
    stop_process(proc)


def _finish_server(attempt: _Attempt) -> None:
    if attempt.server is not None:
        server, attempt.server = attempt.server, None
        server.__exit__(None, None, None)


def _stop_ping(proc: subprocess.Popen) -> None:
    """SIGINT lets ping flush its output and exit; then by pid as any process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
    stop_process(proc)


def _document(src: Node, dst: Node, duration_s, interval_s, ping_interval_s, scale,
              started_at, wall0, runs, ping_text, records, recover_fraction, hold_s,
              baseline_s, congestion) -> dict:
    series = [s for run in runs for s in run.pop("series")]
    # a later attempt starts where an earlier one stopped; keep the step's window
    series = [s for s in series if s["t_s"] < duration_s and s["t_s"] + s["dt_s"] > 0]
    throughput = fill_gaps(series, duration_s, interval_s)
    probes = [p for p in parse_ping_lines(ping_text, wall0, ping_interval_s)
              if 0 <= p["t_s"] < duration_s]
    if not any(s["mbps"] > 0 for s in throughput):
        raise ToolError(f"timeline {src.name} -> {dst.name}: iperf3 carried no data "
                        f"({'; '.join(str(r['error']) for r in runs if r['error']) or 'no output'})")
    result = analyse(throughput, probes, records, duration_s, recover_fraction, hold_s, baseline_s)
    return {
        "src": src.name, "dst": dst.name, "started_at": started_at,
        "duration_s": duration_s, "interval_s": interval_s, "ping_interval_s": ping_interval_s,
        "scale": scale, "congestion": congestion,
        "settings": {"recover_fraction": recover_fraction, "hold_s": hold_s,
                     "baseline_s": baseline_s, "zero_below_mbps": result["zero_below_mbps"]},
        "throughput": throughput,
        "rtt": probes,
        "events": list(records),
        "analysis": result["events"],
        "iperf": {"attempts": runs},
        "restored": True,
    }
