"""The userspace delay line: NFQUEUE queues held and released on time.

One process per lab namespace serves every impaired ingress interface of that
namespace, one NFQUEUE queue per (link, direction). For each packet it draws
loss (verdict drop at once) or a delay; the packet is held (its verdict
deferred) until ``arrival + delay`` and then accepted. Arrival is the kernel's
receive timestamp when the kernel gives one, converted to the monotonic clock,
so time spent before the line saw the packet is not added again.

Order: each queue is a FIFO -- a packet is never released before the one in
front of it (``release = max(arrival + delay, previous release)``), so jitter
does not reorder a flow. Only ``reorder_pct`` of packets skip the FIFO and
the delay, as netem's ``reorder`` does: released at once (through a side heap
by due time), they overtake the packets held before them.

The queue bound is the NFQUEUE queue length (``max_len``, sized from the BDP
by the parent): the kernel drops and counts (``queue_dropped``) beyond it.

Timing: the loop sleeps in ``select`` until shortly before the next release
and spins for the last stretch; the sleep's lead adapts to the wake-up
overshoot measured on this machine. Lateness (actual minus due release time)
of every packet is recorded (a histogram: cheap to read while running) and reported.

Reload: SIGHUP makes the line re-read its config file and give the queues
whose profile changed new models (:mod:`testbed.delayline.reload`); the
stats report the config ``generation`` in force and the ``reloads`` done.
"""

from __future__ import annotations

import collections
import ctypes
import heapq
import json
import math
import os
import select
import signal
import socket
import time
from typing import Dict, List, Optional

from netfilterqueue import COPY_META, COPY_PACKET, NetfilterQueue

from testbed.clocks import SO_TIMESTAMPNS, ClockOffset
from testbed.delayline.latehist import LatenessHistogram
from testbed.delayline.priority import priority_for, raise_priority
from testbed.delayline.reload import Reloadable, drain
from testbed.delayline.sampling import PacketModels

__all__ = ["DelayLine", "QueueState", "run_from_config"]

PR_SET_TIMERSLACK = 29
STATS_PERIOD_S = 0.5
STATS_GAP_S = 0.002
LEAD_MIN_S = 300e-6
LEAD_MAX_S = 1e-3
IDLE_WAIT_S = 0.25
MAX_TIMESTAMP_AGE_S = 0.005


class QueueState:
    """One NFQUEUE queue: one direction of one link."""

    def __init__(self, cfg: dict):
        self.num = int(cfg["queue_num"])
        self.set_config(cfg)
        prof = cfg["profile"]
        self.needs_payload = bool(prof.get("duplicate_pct") or prof.get("corrupt_pct"))
        self.fifo: collections.deque = collections.deque()  # (due, seq, pkt, dup)
        self.side: List[tuple] = []  # heap of reordered packets
        self.last_due = 0.0
        self.seq = 0
        self.counters = dict(received=0, accepted=0, dropped_loss=0, duplicated=0,
                             corrupted=0, reordered=0, held_max=0, kernel_ts=0)
        self.late = LatenessHistogram()
        self.nfq: Optional[NetfilterQueue] = None

    def set_config(self, cfg: dict) -> None:
        """Models from ``cfg``'s profile and seed (at start and on reload)."""
        self.cfg = cfg
        models = PacketModels(cfg["profile"], cfg.get("seed"))
        self.delay, self.lose, self.rng = models.delay, models.lose, models.rng
        self.duplicate, self.corrupt, self.reorder = models.duplicate, models.corrupt, models.reorder

    def head_due(self) -> float:
        due = math.inf
        if self.fifo:
            due = self.fifo[0][0]
        if self.side and self.side[0][0] < due:
            due = self.side[0][0]
        return due

    def held(self) -> int:
        return len(self.fifo) + len(self.side)


class DelayLine(Reloadable):
    def __init__(self, config: dict, config_path: Optional[str] = None):
        self.config = config
        self.config_path = config_path
        self.queues = [QueueState(q) for q in config["queues"]]
        self.stats_path = config["stats_path"]
        self.running = True
        self.generation = int(config.get("generation", 0))
        self.reloads = 0
        self.reload_requested = False
        self.lead_s = 200e-6
        self.raw: Optional[socket.socket] = None
        self.started = time.monotonic()
        self.clock_offset = ClockOffset()  # real-time - monotonic, from tight bracketed reads
        self.errors: List[str] = []

    # -- packet arrival -------------------------------------------------
    def _callback(self, q: QueueState):
        def on_packet(pkt) -> None:
            now = time.monotonic()
            arrival = now
            ts = pkt.get_timestamp()
            if ts:
                # Kernel receive time (wall clock) -> monotonic, by an offset no
                # preemption between two clock reads can skew (testbed.clocks).
                # Only trusted when plausible: a forwarded skb may carry a sender's
                # departure time in another clock base (EDT/mono delivery time).
                age = now + self.clock_offset.read() / 1e9 - ts
                if 0.0 <= age < MAX_TIMESTAMP_AGE_S:
                    arrival = now - age
                    q.counters["kernel_ts"] += 1
            c = q.counters
            c["received"] += 1
            if q.lose():
                c["dropped_loss"] += 1
                pkt.drop()
                return
            dup = q.duplicate()
            if q.corrupt():
                self._corrupt(pkt, q)
                c["corrupted"] += 1
            if dup:
                pkt.retain()
            due = arrival + q.delay.sample() / 1000.0
            q.seq += 1
            if q.reorder():
                # netem's reorder: sent at once, without the delay, so it
                # overtakes every packet still held in the FIFO
                c["reordered"] += 1
                heapq.heappush(q.side, (arrival, q.seq, pkt, dup))
            else:
                due = max(due, q.last_due)
                q.last_due = due
                q.fifo.append((due, q.seq, pkt, dup))
            held = q.held()
            if held > c["held_max"]:
                c["held_max"] = held
        return on_packet

    def _corrupt(self, pkt, q: QueueState) -> None:
        data = bytearray(pkt.get_payload())
        ihl = (data[0] & 0x0F) * 4 if data else 0
        if len(data) <= ihl:
            return
        pos = q.rng.randrange(ihl, len(data))
        data[pos] ^= 1 << q.rng.randrange(8)
        pkt.set_payload(bytes(data))

    # -- release --------------------------------------------------------
    def _release_due(self, now: float) -> None:
        for q in self.queues:
            while q.fifo and q.fifo[0][0] <= now:
                self._release(q, q.fifo.popleft(), now)
            while q.side and q.side[0][0] <= now:
                self._release(q, heapq.heappop(q.side), now)

    def _release(self, q: QueueState, item: tuple, now: float) -> None:
        due, _seq, pkt, dup = item
        payload = pkt.get_payload() if dup else None
        pkt.accept()
        q.counters["accepted"] += 1
        q.late.add(time.monotonic() - due)
        if dup and payload:
            self._inject(payload)
            q.counters["duplicated"] += 1

    def _inject(self, payload: bytes) -> None:
        """Send a copy of an IPv4 packet on from this namespace (duplicate)."""
        if self.raw is None:
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        dst = socket.inet_ntoa(payload[16:20])
        try:
            self.raw.sendto(payload, (dst, 0))
        except OSError as exc:
            self.errors.append(f"duplicate to {dst}: {exc}")

    # -- stats ----------------------------------------------------------
    def _queue_drops(self) -> Dict[int, int]:
        drops: Dict[int, int] = {}
        try:
            with open("/proc/net/netfilter/nfnetlink_queue") as fh:
                for line in fh:
                    f = line.split()
                    if len(f) >= 7:
                        drops[int(f[0])] = int(f[5]) + int(f[6])
        except OSError:
            pass
        return drops

    def write_stats(self, ready: bool = True, final: bool = False) -> None:
        drops = self._queue_drops()
        out = []
        for q in self.queues:
            late = q.late

            def ms(value: Optional[float]) -> Optional[float]:
                return None if value is None else round(value * 1000.0, 4)

            out.append(dict(
                queue_num=q.num, link=q.cfg.get("link"), direction=q.cfg.get("direction"),
                ifname=q.cfg.get("ifname"), held=q.held(),
                dropped_queue=drops.get(q.num, 0), **q.counters,
                late_ms={"p50": ms(late.percentile_s(0.5)), "p99": ms(late.percentile_s(0.99)),
                         "max": ms(late.max_s if late.total else None), "samples": late.total},
                late_hist=late.sparse(),
            ))
        doc = dict(pid=os.getpid(), ready=ready, final=final, generation=self.generation,
                   reloads=self.reloads, flushes=self.flushes,
                   uptime_s=round(time.monotonic() - self.started, 3),
                   cpu_s=round(sum(os.times()[:2]), 3), lead_us=round(self.lead_s * 1e6, 1),
                   sched=self.config.get("sched"), errors=self.errors[-10:], queues=out)
        tmp = f"{self.stats_path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, self.stats_path)

    # -- main loop ------------------------------------------------------
    def bind(self) -> None:
        for q in self.queues:
            nfq = NetfilterQueue()
            mode = COPY_PACKET if q.needs_payload else COPY_META
            nfq.bind(q.num, self._callback(q), max_len=int(q.cfg.get("max_len", 10_000)),
                     mode=mode, range=65535, sock_len=8 * 1024 * 1024)
            q.nfq = nfq

    def stop(self, *_args) -> None:
        self.running = False

    # -- reload (testbed.delayline.reload.Reloadable) -------------------
    def _queue_configs(self) -> List[dict]:
        return [q.cfg for q in self.queues]

    def _apply_changes(self, changed: Dict[int, dict]) -> None:
        for index, cfg in changed.items():
            self.queues[index].set_config(cfg)

    def _wakeup_pipe(self):
        """A pipe signals write to, so select wakes at once for SIGHUP/SIGTERM (main thread only)."""
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: reloads wait for the next wake-up
            os.close(r)
            os.close(w)
            return None
        return r, w

    def run(self) -> None:
        try:
            ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        # A socket asking for receive timestamps makes the kernel stamp every
        # received skb on arrival, so queued packets carry their true arrival
        # time (NFQA_TIMESTAMP) instead of the moment this process woke up.
        self._ts_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._ts_sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.bind()
        fds = {q.nfq.get_fd(): q for q in self.queues}
        wake = self._wakeup_pipe()
        fd_list = list(fds) + ([wake[0]] if wake else [])
        self.write_stats(ready=True)
        next_stats = time.monotonic() + STATS_PERIOD_S
        try:
            while self.running:
                if self.reload_requested:
                    self.reload()
                now = time.monotonic()
                self._release_due(now)
                due = min((q.head_due() for q in self.queues), default=math.inf)
                now = time.monotonic()
                if due == math.inf:
                    timeout = IDLE_WAIT_S
                else:
                    timeout = due - now - self.lead_s
                    if timeout <= 0:
                        timeout = 0.0  # spin: poll without sleeping
                # select, not epoll: epoll rounds its timeout up to whole milliseconds
                ready, _, _ = select.select(fd_list, [], [], timeout)
                woke = time.monotonic()
                if timeout > 0 and not ready:
                    # adapt the lead to the measured wake-up overshoot
                    over = (woke - now) - timeout
                    self.lead_s = min(LEAD_MAX_S, max(LEAD_MIN_S, 0.9 * self.lead_s + 0.1 * (over + 100e-6)))
                for fd in ready:
                    if wake and fd == wake[0]:
                        drain(fd)
                    else:
                        fds[fd].nfq.run(block=False)
                self.flush_if_requested()
                # stats wait for a gap of at least STATS_GAP_S before the next release
                if woke >= next_stats and due - woke > STATS_GAP_S:
                    self.write_stats()
                    next_stats = woke + STATS_PERIOD_S
        finally:
            self.write_stats(final=True)
            for q in self.queues:
                if q.nfq is not None:
                    q.nfq.unbind()
            if wake:
                signal.set_wakeup_fd(-1)
                os.close(wake[0])
                os.close(wake[1])


ENGINES = ("python", "c", "auto")


def run_from_config(path: str) -> int:
    """Run the line described by the JSON config at ``path``.

    ``"engine"``: ``"python"`` (default, this module), ``"c"`` (the C engine,
    :mod:`testbed.delayline.fast`; an error when it is not built) or
    ``"auto"`` (the C engine when built, else this one).
    """
    with open(path) as fh:
        config = json.load(fh)
    # before any thread starts: the feeder and stats threads inherit it
    config["sched"] = raise_priority(priority_for(config))
    engine = config.get("engine", "python")
    if engine not in ENGINES:
        raise ValueError(f"delay line engine must be one of {ENGINES}, not {engine!r}")
    if engine != "python":
        from testbed.delayline import fast

        if fast.engine_available():
            return fast.run_fast(config, path)
        if engine == "c":
            raise RuntimeError("delay line engine 'c' asked for, but testbed.delayline._fastline "
                               "is not built (pip install . with gcc and python3-dev)")
    line = DelayLine(config, path)
    signal.signal(signal.SIGTERM, line.stop)
    signal.signal(signal.SIGINT, line.stop)
    signal.signal(signal.SIGHUP, line.request_reload)
    signal.signal(signal.SIGUSR1, line.request_flush)
    line.run()
    return 0
