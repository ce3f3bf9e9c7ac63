"""The C delay-line engine (``_fastline``) driven from Python.

The packet loop runs in C with the GIL released (:mod:`testbed.delayline._fastline`).
Python keeps what it is good at and what must stay single-sourced:

* the statistical models: :class:`ModelFeeder` draws per-packet decisions
  with :mod:`testbed.delayline.sampling` (the same classes, seeding and call
  order as :class:`testbed.delayline.line.QueueState`) into buffers that a
  feeder thread pushes into the engine's per-queue ring; a queue without
  randomness (no jitter, loss, corrupt or reorder) runs in constant mode and
  needs no feed at all;
* the stats file (same keys as the Python line, plus ``engine``), written
  by a thread every ``STATS_PERIOD_S``;
* signals: SIGTERM/SIGINT wake the C loop through ``signal.set_wakeup_fd``;
  the final stats are written and the socket closed (the kernel drops what
  is still held, as the Python line's unbind does);
* reload: SIGHUP wakes the loop the same way; between two ``run()`` calls
  the config file is re-read (:mod:`testbed.delayline.reload`) and each
  changed queue gets ``Engine.reconfigure`` (mode, constant delay, GSO) and
  a new feeder, with the feed thread paused so no old draw is pushed.

GSO: a queue takes GSO packets whole (``NFQA_CFG_F_GSO``) unless it drops or
corrupts packets, where loss and corruption must hit single wire packets
(as with the Python line); ``"gso": true|false`` in a queue's config forces it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from array import array
from typing import Dict, List, Optional, Tuple

from testbed.clocks import SO_TIMESTAMPNS
from testbed.delayline.latehist import LatenessHistogram
from testbed.delayline.priority import is_constant
from testbed.delayline.reload import Reloadable, drain
from testbed.delayline.sampling import PacketModels

try:
    from testbed.delayline import _fastline
except ImportError:  # not built: the Python engine is the fallback
    _fastline = None

__all__ = ["engine_available", "engine_queue_config", "ModelFeeder", "FastDelayLine",
           "run_fast"]

STATS_PERIOD_S = 0.5
FEED_SIZE = 1 << 16
FEED_CHUNK = 2048
FEED_IDLE_S = 0.002
RCVBUF_BYTES = 64 << 20
_MAX_QUEUE_DROPS_FIELDS = 7


def engine_available() -> bool:
    """True when the C extension is built and importable."""
    return _fastline is not None


def _profile(qcfg: dict) -> dict:
    return qcfg.get("profile", {})


def engine_queue_config(qcfg: dict) -> dict:
    """The C engine's settings for one queue of the line's config."""
    prof = _profile(qcfg)
    if prof.get("duplicate_pct"):
        raise ValueError(f"queue {qcfg.get('queue_num')}: duplicate is not supported by the C engine")
    gso = qcfg.get("gso", "auto")
    if gso == "auto":
        gso = not (prof.get("loss_pct") or prof.get("corrupt_pct"))
    return {
        "queue_num": int(qcfg["queue_num"]),
        "max_len": int(qcfg.get("max_len", 10_000)),
        "gso": int(bool(gso)),
        "copy_payload": int(bool(prof.get("corrupt_pct"))),
        "const_mode": int(is_constant(prof)),
        "delay_ns": int(round(float(prof.get("delay_ms", 0.0)) * 1e6)),
    }


class ModelFeeder:
    """Per-packet draws for one queue, from :mod:`sampling`, in engine buffers.

    Same random stream as the Python line's ``QueueState`` for the same seed
    (one ``random.Random(seed)``, draws in the same order: loss; then for a
    kept packet duplicate, corrupt, [corrupt position], delay, reorder),
    except that the corrupt position is one 32-bit draw (the C side maps it
    onto the packet) where the Python line draws two ranges.
    """

    def __init__(self, qcfg: dict):
        prof = _profile(qcfg)
        models = PacketModels(prof, qcfg.get("seed"))
        self.delay, self.lose, self.rng = models.delay, models.lose, models.rng
        self.duplicate, self.corrupt, self.reorder = models.duplicate, models.corrupt, models.reorder

    def draw(self, count: int) -> Tuple[array, array, array]:
        """``count`` packets: (delay_ns int64, flags uint8, aux uint32) arrays."""
        delays, flags, aux = array("q"), array("B"), array("I")
        lose, dup, corrupt, reorder = self.lose, self.duplicate, self.corrupt, self.reorder
        sample, getrandbits = self.delay.sample, self.rng.getrandbits
        lose_flag, corrupt_flag, reorder_flag = _flags()
        for _ in range(count):
            if lose():
                delays.append(0)
                flags.append(lose_flag)
                aux.append(0)
                continue
            dup()
            f = 0
            a = 0
            if corrupt():
                f |= corrupt_flag
                a = getrandbits(32)
            delay_ns = int(sample() * 1e6)  # drawn either way: the Python line's draw order
            if reorder():
                f |= reorder_flag
                delay_ns = 0  # netem's reorder: sent at once, overtaking the queued packets
            delays.append(delay_ns)
            flags.append(f)
            aux.append(a)
        return delays, flags, aux


def _flags() -> Tuple[int, int, int]:
    if _fastline is not None:
        return _fastline.FLAG_LOSE, _fastline.FLAG_CORRUPT, _fastline.FLAG_REORDER
    return 1, 2, 4


def _queue_drops() -> Dict[int, int]:
    """Kernel drops per queue (queue full + user dropped), as the Python line reads them."""
    drops: Dict[int, int] = {}
    try:
        with open("/proc/net/netfilter/nfnetlink_queue") as fh:
            for line in fh:
                f = line.split()
                if len(f) >= _MAX_QUEUE_DROPS_FIELDS:
                    drops[int(f[0])] = int(f[5]) + int(f[6])
    except OSError:
        pass
    return drops


def _late_ms(q: dict) -> dict:
    hist = LatenessHistogram()
    hist.counts = list(q["late_counts"])
    hist.total = int(q["late_total"])
    hist.max_s = float(q["late_max_s"])

    def ms(value: Optional[float]) -> Optional[float]:
        return None if value is None else round(value * 1000.0, 4)

    return {"p50": ms(hist.percentile_s(0.5)), "p99": ms(hist.percentile_s(0.99)),
            "max": ms(hist.max_s if hist.total else None), "samples": hist.total}


class FastDelayLine(Reloadable):
    """One namespace's delay line on the C engine (same config as ``DelayLine``)."""

    def __init__(self, config: dict, config_path: Optional[str] = None):
        if _fastline is None:
            raise RuntimeError("the C delay-line engine (_fastline) is not built")
        self.config = config
        self.config_path = config_path
        self.generation = int(config.get("generation", 0))
        self.reloads = 0
        self.reload_requested = False
        self.qcfgs: List[dict] = list(config["queues"])
        self.stats_path: str = config["stats_path"]
        self.settings = [engine_queue_config(q) for q in self.qcfgs]
        self.feeders: Dict[int, ModelFeeder] = {
            i: ModelFeeder(q) for i, q in enumerate(self.qcfgs) if not self.settings[i]["const_mode"]
        }
        self.running = True
        self.started = time.monotonic()
        self.errors: List[str] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.engine = _fastline.Engine(self.settings, wake_fd=self._wake_r,
                                       rcvbuf_bytes=RCVBUF_BYTES, feed_size=FEED_SIZE)
        self._threads_stop = threading.Event()
        self._stats_lock = threading.Lock()
        self._feed_lock = threading.Lock()
        self._feed_thread: Optional[threading.Thread] = None

    # -- model feed -----------------------------------------------------
    def _feed_once(self) -> int:
        """Top up every feed ring by whole chunks; returns entries pushed."""
        pushed = 0
        with self._feed_lock:
            for qi, feeder in self.feeders.items():
                filled, size = self.engine.feed_level(qi)
                while size - filled >= FEED_CHUNK:
                    delays, flags, aux = feeder.draw(FEED_CHUNK)
                    taken = self.engine.push(qi, delays, flags, aux)
                    if taken != FEED_CHUNK:  # cannot happen with one producer; keep the rest
                        self.errors.append(f"feed {qi}: pushed {taken} of {FEED_CHUNK}")
                    pushed += taken
                    filled += taken
        return pushed

    def _feed_loop(self) -> None:
        while not self._threads_stop.is_set():
            if not self._feed_once():
                self._threads_stop.wait(FEED_IDLE_S)

    def _stats_loop(self) -> None:
        while not self._threads_stop.wait(STATS_PERIOD_S):
            self.write_stats()

    # -- stats ----------------------------------------------------------
    def write_stats(self, ready: bool = True, final: bool = False) -> None:
        est = self.engine.stats()
        drops = _queue_drops()
        out = []
        for qcfg, q in zip(self.qcfgs, est["queues"]):
            doc = {k: v for k, v in q.items()
                   if k not in ("late_counts", "late_total", "late_max_s")}
            doc.update(link=qcfg.get("link"), direction=qcfg.get("direction"),
                       ifname=qcfg.get("ifname"), dropped_queue=drops.get(q["queue_num"], 0),
                       duplicated=0, late_ms=_late_ms(q),
                       late_hist={str(i): c for i, c in enumerate(q["late_counts"]) if c})
            out.append(doc)
        errors = list(self.errors[-10:])
        if est["verdict_errors"]:
            errors.append(f"{est['verdict_errors']} verdicts refused by the kernel "
                          f"(last errno {est['last_verdict_errno']})")
        doc = dict(pid=os.getpid(), ready=ready, final=final, engine="c",
                   generation=self.generation, reloads=self.reloads, flushes=self.flushes,
                   uptime_s=round(time.monotonic() - self.started, 3),
                   cpu_s=round(sum(os.times()[:2]), 3), lead_us=round(est["lead_us"], 1),
                   read_batch_us=est["read_batch_us"], sched=self.config.get("sched"), errors=errors, queues=out)
        with self._stats_lock:
            tmp = f"{self.stats_path}.tmp"
            with open(tmp, "w") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self.stats_path)

    # -- lifecycle ------------------------------------------------------
    def stop(self, *_args) -> None:
        self.running = False

    # -- reload (testbed.delayline.reload.Reloadable) -------------------
    def _queue_configs(self) -> List[dict]:
        return self.qcfgs

    def _apply_changes(self, changed: Dict[int, dict]) -> None:
        with self._feed_lock:
            for qi, qcfg in changed.items():
                settings = engine_queue_config(qcfg)
                self.engine.reconfigure(qi, settings)
                self.qcfgs[qi] = qcfg
                self.settings[qi] = settings
                if settings["const_mode"]:
                    self.feeders.pop(qi, None)
                else:
                    self.feeders[qi] = ModelFeeder(qcfg)
                    # one chunk now (the loop is stopped meanwhile: a full ring takes
                    # ~0.2 s per queue); the feed thread tops the rings up while it runs
                    self.engine.push(qi, *self.feeders[qi].draw(FEED_CHUNK))

    def _after_changes(self, changed: Dict[int, dict]) -> None:
        if self.feeders and self._feed_thread is None:
            self._start_feed_thread()

    def _start_feed_thread(self) -> None:
        self._feed_thread = threading.Thread(target=self._feed_loop, name="feed", daemon=True)
        self._feed_thread.start()

    def run(self) -> None:
        # Receive timestamps on: the kernel stamps every skb on arrival, so
        # queued packets carry their true arrival time (NFQA_TIMESTAMP).
        ts_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ts_sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        threads: List[threading.Thread] = []
        try:
            self._feed_once()  # full rings before the first packet
            self.engine.bind()
            self.write_stats(ready=True)
            if self.feeders:
                self._start_feed_thread()
            threads.append(threading.Thread(target=self._stats_loop, name="stats", daemon=True))
            for t in threads:
                t.start()
            while self.running:
                self.engine.run()  # returns when a signal arrived
                drain(self._wake_r)
                if self.reload_requested and self.running:
                    self.reload()
                self.flush_if_requested()
        finally:
            self._threads_stop.set()
            if self._feed_thread is not None:
                threads.append(self._feed_thread)
            for t in threads:
                t.join(timeout=2.0)
            signal.set_wakeup_fd(old_wakeup)
            try:
                self.write_stats(final=True)
            finally:
                self.engine.close()
                ts_sock.close()
                os.close(self._wake_r)
                os.close(self._wake_w)


def run_fast(config: dict, config_path: Optional[str] = None) -> int:
    """Run the C engine for ``config`` until SIGTERM/SIGINT; returns the exit code.

    SIGHUP re-reads ``config_path`` (a profile change, see :meth:`FastDelayLine.reload`).
    """
    line = FastDelayLine(config, config_path)
    signal.signal(signal.SIGTERM, line.stop)
    signal.signal(signal.SIGINT, line.stop)
    signal.signal(signal.SIGHUP, line.request_reload)
    signal.signal(signal.SIGUSR1, line.request_flush)
    line.run()
    return 0
