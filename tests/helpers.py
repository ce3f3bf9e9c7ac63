"""Independent oracles for the integration tests: the kernel's own tools, parsed here.

Nothing in this module imports the testbed: the state of namespaces, links,
qdiscs, bridges and iptables is read back with ``ip -json``, ``tc -json``,
``bridge -json`` and ``iptables -S`` and parsed here, so the code under test
is never its own oracle (pyroute2's test helpers do the same). Also the
statistics the accuracy tests judge by (binomial interval, loss bursts) and
:func:`judge_repeated`, which runs a measurement up to N times and passes
when enough samples are inside tolerance, printing expected, measured and
both bounds when they are not.

Every command is an argv list with a timeout and a checked exit code.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "IT_PREFIX",
    "REPO_ROOT",
    "STATE_DIR",
    "subprocess_env",
    "run_cmd",
    "netns_names",
    "lab_netns_names",
    "ip_json",
    "tc_qdiscs",
    "tc_classes",
    "parse_tc_rate_bps",
    "iptables_rules",
    "iptables_chain_packets",
    "bridge_port_states",
    "link_operstates",
    "wait_namespaces_ready",
    "lab_ready_problems",
    "root_snapshot",
    "diff_snapshots",
    "pid_running",
    "pid_start_time",
    "binomial_interval",
    "loss_bursts",
    "mean",
    "stdev",
    "Sample",
    "judge_repeated",
    "WakeupLateness",
]

#: Every lab and namespace these tests make starts with this (netns ``tb.it-...``).
IT_PREFIX = "it-"
CMD_TIMEOUT_S = 15.0
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where labs keep their state (the library's default, or TESTBED_STATE_DIR).
STATE_DIR = Path(os.environ.get("TESTBED_STATE_DIR", "/run/testbed"))


def subprocess_env() -> Dict[str, str]:
    """Environment for ``python -m testbed...`` subprocesses: this checkout first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_cmd(argv: Sequence[str], timeout_s: float = CMD_TIMEOUT_S, check: bool = True,
            **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv``; AssertionError with its stderr if it fails and ``check``."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                          **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def _json(argv: Sequence[str], timeout_s: float = CMD_TIMEOUT_S):
    text = run_cmd(argv, timeout_s).stdout.strip()
    return json.loads(text) if text else []


# -- namespaces, links, addresses ---------------------------------------------

def netns_names() -> List[str]:
    """Every named network namespace (``ip -json netns list``)."""
    return sorted(entry["name"] for entry in _json(["ip", "-json", "netns", "list"]))


def lab_netns_names(lab: str) -> List[str]:
    """The namespaces of lab ``lab``: ``tb.<lab>.<node>`` and ``tb.<lab>._w<id>``."""
    prefix = f"tb.{lab}."
    return [n for n in netns_names() if n.startswith(prefix)]


def ip_json(args: Sequence[str], netns: Optional[str] = None):
    """``ip -json [-n NETNS] ARGS...`` decoded."""
    argv = ["ip", "-json"] + (["-n", netns] if netns else []) + list(args)
    return _json(argv)


def link_operstates(netns: str) -> Dict[str, str]:
    """Interface name -> operstate inside ``netns`` (loopback left out)."""
    return {d["ifname"]: d.get("operstate", "UNKNOWN")
            for d in ip_json(["link", "show"], netns) if d.get("ifname") != "lo"}


def bridge_port_states(netns: str) -> Dict[str, str]:
    """Bridge port -> STP state ("forwarding", "disabled", ...) inside ``netns``."""
    return {d["ifname"]: d.get("state", "unknown")
            for d in _json(["bridge", "-json", "-n", netns, "link", "show"])}


def lab_ready_problems(lab: str) -> List[str]:
    """What keeps lab ``lab`` from carrying traffic right now (empty: ready).

    Every interface of every lab namespace must be operationally UP (veths)
    or UNKNOWN, and every bridge port must be forwarding.
    """
    problems = []
    names = lab_netns_names(lab)
    if not names:
        return [f"lab {lab} has no namespaces"]
    for netns in names:
        for ifname, state in link_operstates(netns).items():
            if state not in ("UP", "UNKNOWN"):
                problems.append(f"{netns}:{ifname} operstate {state}")
        for ifname, state in bridge_port_states(netns).items():
            if state != "forwarding":
                problems.append(f"{netns}:{ifname} bridge port {state}")
    return problems


def wait_namespaces_ready(lab: str, timeout_s: float = 5.0) -> float:
    """Poll until :func:`lab_ready_problems` is empty; return the seconds waited."""
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        problems = lab_ready_problems(lab)
        if not problems:
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"lab {lab} not ready after {timeout_s:g} s: {problems}")
        time.sleep(0.02)


# -- tc ----------------------------------------------------------------------

_RATE_UNITS = {"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
               "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12}


def parse_tc_rate_bps(text) -> int:
    """A rate as tc prints it ("5Gbit", "95600Kbit", "1000000000" bytes/s in JSON)."""
    if isinstance(text, (int, float)):
        return int(text) * 8  # tc -json prints rates as bytes per second
    match = re.fullmatch(r"([\d.]+)\s*([A-Za-z]*)", str(text).strip())
    if not match or match.group(2).lower() not in _RATE_UNITS:
        raise ValueError(f"not a tc rate: {text!r}")
    return int(round(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]))


def tc_qdiscs(netns: str, dev: Optional[str] = None) -> List[dict]:
    """``tc -json -n NETNS qdisc show [dev DEV]``."""
    argv = ["tc", "-json", "-n", netns, "qdisc", "show"] + (["dev", dev] if dev else [])
    return _json(argv)


def tc_classes(netns: str, dev: str) -> List[dict]:
    """Classes on ``dev``: ``{"kind", "handle", "rate_bps", "ceil_bps"}`` each.

    Read with ``tc -json class show``; iproute2 6.1 prints htb classes as text
    even with ``-json``, so text lines are parsed too.
    """
    text = run_cmd(["tc", "-json", "-n", netns, "class", "show", "dev", dev]).stdout.strip()
    out = []
    try:
        for entry in json.loads(text) if text else []:
            opts = entry.get("options", {})
            out.append({"kind": entry.get("class"), "handle": entry.get("handle"),
                        "rate_bps": parse_tc_rate_bps(opts["rate"]) if "rate" in opts else None,
                        "ceil_bps": parse_tc_rate_bps(opts["ceil"]) if "ceil" in opts else None})
        return out
    except json.JSONDecodeError:
        pass
    for line in text.splitlines():
        match = re.match(r"class (\S+) (\S+) ", line.strip())
        if not match:
            continue
        rate = re.search(r" rate (\S+)", line)
        ceil = re.search(r" ceil (\S+)", line)
        out.append({"kind": match.group(1), "handle": match.group(2),
                    "rate_bps": parse_tc_rate_bps(rate.group(1)) if rate else None,
                    "ceil_bps": parse_tc_rate_bps(ceil.group(1)) if ceil else None})
    return out


# -- iptables ----------------------------------------------------------------

def iptables_rules(netns: Optional[str] = None, table: str = "filter") -> List[str]:
    """``iptables -S`` lines of ``table`` (in ``netns``, or the root namespace)."""
    argv = (["ip", "netns", "exec", netns] if netns else []) + [
        "iptables", "-w", "5", "-t", table, "-S"]
    return run_cmd(argv).stdout.splitlines()


def iptables_chain_packets(chain: str) -> int:
    """Packets counted by all rules of root-namespace ``chain`` (``-L -v -x -n``)."""
    lines = run_cmd(["iptables", "-w", "5", "-L", chain, "-v", "-x", "-n"]).stdout.splitlines()
    total = 0
    for line in lines[2:]:  # "Chain ..." and the column header
        fields = line.split()
        if fields:
            total += int(fields[0])
    return total


# -- the root namespace --------------------------------------------------------

_VOLATILE = ("valid_life_time", "preferred_life_time", "expires", "used", "stats64",
             "stats", "tx_queue_len_changes")


def _scrub(value):
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def root_snapshot(ignore_chains: Callable[[str], bool] = lambda chain: False) -> dict:
    """Root namespace addresses, routes and iptables rules, comparable across time.

    Lifetimes and counters are dropped. ``ignore_chains(name)`` leaves out
    iptables lines that mention a chain another user's lab may add meanwhile.
    """
    def keep(rule: str) -> bool:
        return not any(ignore_chains(tok) for tok in re.findall(r"TB-[a-z0-9-]+", rule))

    return {
        "addresses": _scrub(ip_json(["addr", "show"])),
        "routes4": _scrub(ip_json(["-4", "route", "show", "table", "all"])),
        "routes6": _scrub(ip_json(["-6", "route", "show", "table", "all"])),
        "iptables": {t: [r for r in iptables_rules(table=t) if keep(r)]
                     for t in ("filter", "nat", "mangle", "raw")},
    }


def diff_snapshots(before: dict, after: dict) -> List[str]:
    """Human-readable differences between two :func:`root_snapshot` results."""
    out = []
    for key in before:
        if before[key] != after.get(key):
            out.append(f"{key}: before {json.dumps(before[key])[:2000]}\n"
                       f"   after {json.dumps(after.get(key))[:2000]}")
    return out


# -- processes -----------------------------------------------------------------

def pid_running(pid: int) -> bool:
    """True if /proc/<pid> exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2:].split()[0] != "Z"


def pid_start_time(pid: int) -> Optional[int]:
    """Start time of process ``pid`` (clock ticks, /proc/<pid>/stat field 22), None if gone.

    (pid, start time) names one process for good, even if the pid is reused.
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data[data.rindex(")") + 2:].split()[19])


# -- statistics ----------------------------------------------------------------

def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1)."""
    if len(values) < 2:
        raise ValueError("stdev needs two values")
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def _binom_pmf(k: int, n: int, p: float) -> float:
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_interval(n: int, p: float, confidence: float = 0.95) -> Tuple[int, int]:
    """Central interval [lo, hi] of losses among ``n`` independent trials at ``p``.

    ``P(X < lo) <= alpha/2`` and ``P(X > hi) <= alpha/2`` with alpha = 1 - confidence.
    """
    if not 0 < p < 1 or n < 1:
        raise ValueError("need 0 < p < 1 and n >= 1")
    tail = (1 - confidence) / 2
    cdf = 0.0
    lo = None
    hi = n
    for k in range(n + 1):
        pk = _binom_pmf(k, n, p)
        if lo is None and cdf + pk > tail:
            lo = k
        cdf += pk
        if cdf >= 1 - tail:
            hi = k
            break
    return (lo or 0), hi


def loss_bursts(received_seqs: Iterable[int], count: int) -> List[int]:
    """Lengths of the runs of consecutive sequence numbers in ``range(count)`` never received."""
    got = set(received_seqs)
    runs, current = [], 0
    for seq in range(count):
        if seq in got:
            if current:
                runs.append(current)
            current = 0
        else:
            current += 1
    if current:
        runs.append(current)
    return runs


# -- judging repeated samples ----------------------------------------------------

@dataclass
class Sample:
    measured: float
    ok: bool
    detail: str = ""
    #: (expected, low, high) of this sample when it brought its own (see judge_repeated)
    bounds: Optional[Tuple[float, float, float]] = None


@dataclass
class Baseline:
    """What this machine adds to any RTT, measured, not assumed.

    ``rtt_ms``: the median of ``runs`` mean RTTs over the same path without the
    delay (an unshaped link); ``spread_ms``: how far those means lie apart;
    ``slack_ms``: the median overshoot of a 1 ms sleep here (timer slack: a
    delay element releases a packet that late, once per direction). On real
    hardware all three are a few hundredths of a millisecond and the tight
    tolerances stand; in a VM without KVM they are milliseconds, and an
    accuracy test judges "configured plus baseline" instead of "configured".
    """

    rtt_ms: float
    spread_ms: float
    slack_ms: float
    #: stdev of one-way delays over the unshaped path (None: not measured)
    owd_stdev_ms: Optional[float] = None
    #: the lowest RTT seen over the unshaped path: what no shaped RTT can beat
    #: (None: not measured; ``rtt_ms - spread_ms`` stands in)
    rtt_min_ms: Optional[float] = None
    #: the shortest probe interval at which the unshaped path lost no probe, both
    #: directions at once (None: not measured); the loss tests send no faster
    probe_interval_ms: Optional[float] = None
    #: ping the unshaped path again: ``unshaped_rtt_ms(count, interval_s)`` -> RTT samples
    #: (None: the path is gone)
    unshaped_rtt_ms: Optional[Callable[..., List[float]]] = None

    def jitter_expected(self, configured_ms: float) -> float:
        """A configured jitter's expected stdev: independent of the machine's own, so
        the two add in quadrature (hardware: ~0.02 ms, nothing; a TCG VM: ~1.5 ms)."""
        return math.sqrt(configured_ms ** 2 + (self.owd_stdev_ms or 0.0) ** 2)

    def jitter_bounds(self, configured_ms: float, tolerance: float,
                      late: Optional["WakeupLateness"] = None) -> Tuple[float, float, float]:
        """(expected, low, high) for a one-way delay stdev: :meth:`jitter_expected` within
        ``tolerance`` (relative); upward also the spread of the delay element's own
        lateness during the run (``late``, :meth:`WakeupLateness.at_random_time_ms`),
        independent too, so in quadrature. The machine's spread is independent of the
        configured jitter and can only add to it, so the low bound is the configured
        jitter's alone (on hardware the two bounds are the tight ones either way)."""
        expected = self.jitter_expected(configured_ms)
        late_sd = late.at_random_time_ms()[1] if late is not None else 0.0
        return (expected, configured_ms * (1 - tolerance),
                math.sqrt(expected ** 2 + late_sd ** 2) * (1 + tolerance))

    def rtt_bounds(self, configured_rtt_ms: float, tolerance_ms: float,
                   late: Optional["WakeupLateness"] = None,
                   unshaped: Optional[Sequence[float]] = None,
                   samples: Optional[int] = None) -> Tuple[float, float, float]:
        """(expected, low, high) for a mean RTT: configured + baseline.

        Low: configured + the lowest unshaped RTT seen, less the tolerance (a delay
        element never releases early and the path never beats its own minimum).
        High: expected + the tolerance widened by the baseline's own spread, and
        by the delay element's lateness once per direction: the mean wake-up
        lateness at a random moment measured during the same run (``late``),
        else the timer slack measured at rest. ``unshaped``: RTT samples of the
        unshaped path taken at the same time as the judged ones (the machine's
        load changes within seconds): their mean and minimum stand for the
        baseline's. ``samples``: how many RTTs the judged mean averages; upward
        also three standard errors of that mean from the lateness's own spread
        (two delay elements per RTT, each late by an independent draw with the
        stdev :meth:`WakeupLateness.at_random_time_ms` measured): a 20-ping
        mean in which one reply sat out a 10 ms stall is 0.5 ms high, by
        chance, not by a fault. On hardware all of these are hundredths of a
        millisecond and the tight bounds stand."""
        if unshaped:
            expected, floor = configured_rtt_ms + mean(unshaped), min(unshaped)
        else:
            expected = configured_rtt_ms + self.rtt_ms
            floor = self.rtt_min_ms if self.rtt_min_ms is not None else self.rtt_ms - self.spread_ms
        late_ms = late.at_random_time_ms()[0] if late is not None else self.slack_ms
        chance_ms = 3.0 * late.mean_error_ms(2, samples) if late is not None and samples else 0.0
        return (expected, configured_rtt_ms + floor - tolerance_ms,
                expected + tolerance_ms + self.spread_ms + 2 * late_ms + chance_ms)

    def __str__(self) -> str:
        owd = "" if self.owd_stdev_ms is None else f", one-way delay stdev {self.owd_stdev_ms:.3f} ms"
        rate = ("" if self.probe_interval_ms is None
                else f", probes sustained every {self.probe_interval_ms:g} ms")
        low = "" if self.rtt_min_ms is None else f", min {self.rtt_min_ms:.3f} ms"
        return (f"baseline: unshaped RTT {self.rtt_ms:.3f} ms (spread {self.spread_ms:.3f} ms{low}), "
                f"timer slack {self.slack_ms:.3f} ms{owd}{rate}")


def timer_slack_ms(samples: int = 50) -> float:
    """Median overshoot, in ms, of a 1 ms sleep on this machine now."""
    over = []
    for _ in range(samples):
        start = time.perf_counter()
        time.sleep(0.001)
        over.append((time.perf_counter() - start - 0.001) * 1000.0)
    return sorted(over)[len(over) // 2]


class WakeupLateness:
    """How late this machine wakes a sleeper while a measurement runs (a thread).

    Used as ``with WakeupLateness() as late: <measure>``: a thread sleeps
    ``period_s`` over and over (timer slack 1 ns, as the delay line's) and
    records each overshoot in ms. A delay element releases a held packet from
    a timer that fires as late as this machine wakes anything at that moment:
    hundredths of a millisecond on hardware, milliseconds in a loaded VM
    without KVM, with bursts when the host preempts it. Measured during the
    very run it judges, under the same load.
    """

    def __init__(self, period_s: float = 0.002):
        self.period_s = period_s
        self.samples_ms: List[float] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _run(self) -> None:
        try:
            import ctypes
            ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: this thread only
        except (OSError, AttributeError):
            pass
        while not self._stop.is_set():
            start = time.perf_counter()
            time.sleep(self.period_s)
            self.samples_ms.append((time.perf_counter() - start - self.period_s) * 1000.0)

    def __enter__(self) -> "WakeupLateness":
        self._thread = threading.Thread(target=self._run, name="wakeup-lateness", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean_ms(self) -> float:
        return mean(self.samples_ms) if self.samples_ms else 0.0

    @property
    def stdev_ms(self) -> float:
        return stdev(self.samples_ms) if len(self.samples_ms) > 1 else 0.0

    def at_random_time_ms(self) -> Tuple[float, float]:
        """(mean, stdev) of the lateness of a timer due at a random moment of the run.

        Each sample covers the sampler's interval ``period + overshoot``: a
        timer due in its first ``period`` pays the machine's ordinary wake-up
        cost (the median overshoot), one due in the overshoot (the machine did
        not run) fires when it ran again, uniformly 0 to ``overshoot`` late.
        Weighted by time, as a packet's release is: a 10 ms stall is one
        sample here but holds every packet due during it.
        """
        if not self.samples_ms:
            return 0.0, 0.0
        period_ms = self.period_s * 1000.0
        floor = self.quantile_ms(0.5)
        span = m1 = m2 = 0.0
        for over in self.samples_ms:
            over = max(over, 0.0)
            span += period_ms + over
            m1 += period_ms * floor + over * over / 2.0
            m2 += period_ms * floor * floor + over ** 3 / 3.0
        m1 /= span
        m2 /= span
        return m1, math.sqrt(max(m2 - m1 * m1, 0.0))

    def mean_error_ms(self, elements: int, samples: int) -> float:
        """Standard error, in ms, of a mean of ``samples`` figures that each pass ``elements``
        delay elements, each late by an independent draw at a random time
        (:meth:`at_random_time_ms`'s stdev)."""
        return self.at_random_time_ms()[1] * math.sqrt(elements / samples)

    def quantile_ms(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0.0

    def __str__(self) -> str:
        rt_mean, rt_sd = self.at_random_time_ms()
        return (f"wake-up lateness mean {self.mean_ms:.3f} ms, stdev {self.stdev_ms:.3f} ms "
                f"(at a random time: {rt_mean:.3f}, {rt_sd:.3f} ms), "
                f"p50 {self.quantile_ms(0.5):.3f}, p99 {self.quantile_ms(0.99):.3f}, "
                f"max {self.quantile_ms(1.0):.3f} ms (n={len(self.samples_ms)})")


def measure_baseline(rtt_ms: Callable[[], object], runs: int = 3) -> Baseline:
    """A :class:`Baseline` from ``runs`` calls of ``rtt_ms`` (one unshaped ping run each).

    ``rtt_ms`` returns the run's RTT samples (then their minimum is kept too) or its mean.
    """
    means, lows = [], []
    for _ in range(runs):
        got = rtt_ms()
        if isinstance(got, (int, float)):
            means.append(float(got))
        else:
            means.append(mean(got))
            lows.append(min(got))
    means.sort()
    return Baseline(rtt_ms=means[len(means) // 2], spread_ms=means[-1] - means[0],
                    slack_ms=timer_slack_ms(), rtt_min_ms=min(lows) if lows else None)


def in_band_or_flagged(values: Sequence[float], verdicts: Sequence[str], low: float,
                       high: float) -> Tuple[int, int]:
    """(samples in [low, high], samples in it or flagged): a sample out of band is honest
    only when its own verdict (testbed/collectives/verdict.py) is not ``pass``, i.e. says
    the machine distorted it."""
    inside = sum(low <= v <= high for v in values)
    honest = sum(low <= v <= high or verdict != "pass" for v, verdict in zip(values, verdicts))
    return inside, honest


def judge_repeated(
    what: str,
    measure: Callable[[], tuple],
    expected: Optional[float] = None,
    low: Optional[float] = None,
    high: Optional[float] = None,
    runs: int = 3,
    need: int = 2,
    unit: str = "",
) -> List[Sample]:
    """Run ``measure()`` up to ``runs`` times; pass once ``need`` samples are in [low, high].

    ``measure`` returns (measured value, free-text detail), judged against
    ``[low, high]``; or (value, detail, (expected, low, high)) with bounds of its
    own, for a sample judged against a baseline measured during that same run.
    Stops early as soon as the verdict is known. On failure raises
    AssertionError listing expected, every measured value and the bounds.
    """
    samples: List[Sample] = []
    for _ in range(runs):
        value, detail, *own = measure()
        bounds = own[0] if own else (expected, low, high)
        samples.append(Sample(value, bounds[1] <= value <= bounds[2], detail,
                              tuple(bounds) if own else None))
        passed = sum(s.ok for s in samples)
        left = runs - len(samples)
        if passed >= need or passed + left < need:
            break
    passed = sum(s.ok for s in samples)

    def own(s: Sample) -> str:
        if s.bounds is None:
            return ""
        return f" (expected {s.bounds[0]:.4g} in [{s.bounds[1]:.4g}, {s.bounds[2]:.4g}]{unit})"
    common = ("" if expected is None
              else f"expected {expected:.4g}{unit} in [{low:.4g}, {high:.4g}]; ")
    print(f"{what}: {common}measured "
          + ", ".join(f"{s.measured:.4g}{'' if s.ok else ' (out)'}{own(s)}" for s in samples))
    if passed < need:
        lines = "\n".join(
            f"  run {i + 1}: measured {s.measured:.4g}{unit}{own(s)} "
            f"{'in' if s.ok else 'OUT OF'} tolerance {s.detail}".rstrip()
            for i, s in enumerate(samples)
        )
        head = ("" if expected is None
                else f"  expected {expected:.4g}{unit}, bounds [{low:.4g}, {high:.4g}]{unit}\n")
        raise AssertionError(
            f"{what}: {passed} of {len(samples)} runs in tolerance, need {need} of {runs}\n"
            f"{head}{lines}"
        )
    return samples


# -- end-to-end runs -----------------------------------------------------------

RUN_TIMEOUT_S = 600
#: The delay backend the suite's labs and runs use: pytest's --backend (tests/conftest.py).
TEST_BACKEND = "auto"


def run_quick(out: Path, scenario: Optional[str] = None):
    """``testbed run [SCENARIO] --quick --out OUT`` in a subprocess: ``(out, results doc, process)``.

    Exit 1 is allowed (a fidelity verdict may fail on a loaded machine); the
    tests judge the figures in results.json themselves.
    """
    argv = [sys.executable, "-m", "testbed.cli", "run", *([scenario] if scenario else []),
            "--quick", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=str(out))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    with open(out / "results.json") as fh:
        doc = json.load(fh)
    if TEST_BACKEND != "auto":  # a run picks its backend itself (auto): check it is the one asked for
        used = {v["name"]: v.get("lab", {}).get("backend") for v in doc["variants"]}
        assert set(used.values()) == {TEST_BACKEND}, f"--backend {TEST_BACKEND}, the run used {used}"
    return out, doc, proc


def variant(doc: dict, name: str) -> dict:
    """The variant called ``name`` in a results document."""
    return next(v for v in doc["variants"] if v["name"] == name)


def assert_complete_and_valid(doc: dict, proc) -> None:
    """A run's results.json is valid against the schema and the run completed."""
    from testbed.results import validate_results

    validate_results(doc)
    assert doc["complete"], (doc["errors"], proc.stderr[-2000:])


# -- documentation tables -------------------------------------------------------

def table_rows(text: str, header: str) -> List[List[str]]:
    """Cells of every row of every Markdown table whose header line is ``header``."""
    rows: List[List[str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != header:
            continue
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]
            rows.append(cells)
    assert rows, f"no table with header {header!r}"
    return rows
