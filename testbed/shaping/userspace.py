"""The userspace delay backend: NFQUEUE delay lines at each link's receiving end.

Each shaped link has a wire namespace (a two-port bridge, see
:mod:`testbed.lab.plan`). Direction a -> b is impaired as it enters the wire
from a: an iptables rule in the wire (mangle PREROUTING, ``-m physdev
--physdev-in port-a``, bridged frames reach it through br_netfilter) sends the
packets to an NFQUEUE queue served by the wire's delay line process
(:mod:`testbed.delayline`); the rate and queue of that direction are in the
kernel (htb on port-b's egress). The line thus sits between the hosts like a
real path: neither the sender's TCP small-queue accounting nor the
receiver's kernel timestamps see it as local.

No ``--queue-bypass``: if a line dies its link goes dark rather than silently
unimpaired, and :func:`check_alive` turns that into an error for the run.

Runtime profile change (:func:`reconfigure`): the line's config file gets the
new profile documents and a higher ``generation``, the line is sent SIGHUP
and reports the generation it runs in its stats file; the caller waits for
it (:mod:`testbed.delayline.reload` says what a reload may change).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

from testbed.readiness import wait_until
from testbed.errors import DelayLineDied, InputError, RunError
from testbed.lab import procs
from testbed.lab.kcmd import kernel_cmd
from testbed.lab.plan import WIRE_PORT_A, WIRE_PORT_B, LabPlan

__all__ = ["UserspaceBackend", "queue_plan", "check_alive", "read_stats", "profile_doc",
           "config_path", "reconfigure"]

RELOAD_TIMEOUT_S = 5.0
MAX_LEN_FLOOR = 1024
MAX_LEN_CAP = 200_000
ASSUMED_RATE_BPS = 10_000_000_000  # arrival rate bound for an unshaped direction


def _max_len(profile, mtu: int) -> int:
    """NFQUEUE length: twice the packets in flight at the line's longest delay."""
    rate = profile.rate_bps or ASSUMED_RATE_BPS
    hold_s = (profile.delay_ms + 4 * profile.jitter_ms) / 1000.0
    pkts = rate / 8 / max(mtu, 576) * hold_s * 2
    return int(min(MAX_LEN_CAP, max(MAX_LEN_FLOOR, math.ceil(pkts))))


def profile_doc(profile) -> dict:
    """The impairments of one direction as the delay line's config carries them."""
    doc = {
        "delay_ms": profile.delay_ms,
        "jitter_ms": profile.jitter_ms,
        "jitter_distribution": profile.jitter_distribution,
        "correlation_pct": profile.correlation_pct,
        "loss_pct": profile.loss_pct,
        "loss_model": profile.loss_model,
        "duplicate_pct": profile.duplicate_pct,
        "corrupt_pct": profile.corrupt_pct,
        "reorder_pct": profile.reorder_pct,
    }
    if profile.loss_model == "gilbert-elliott" and profile.loss_pct > 0:
        doc["ge"] = profile.gilbert_elliott_params()
    return doc


def queue_plan(plan: LabPlan, seed: int = 0) -> Dict[str, List[dict]]:
    """Queues per wire namespace: one per impaired direction of its link."""
    out: Dict[str, List[dict]] = {}
    for link in plan.links:
        for direction, profile, in_port in (
            ("forward", link.spec.forward, WIRE_PORT_A),
            ("reverse", link.spec.reverse, WIRE_PORT_B),
        ):
            if not profile.has_impairment:
                continue
            if profile.duplicate_pct:
                raise InputError(
                    f"links.{link.name}.duplicate",
                    "duplicate needs the netem backend (the userspace line cannot yet "
                    "re-send a bridged frame); use --set backend=netem on a kernel with netem",
                )
            queues = out.setdefault(link.wire, [])
            queues.append({
                "queue_num": len(queues) + 1,
                "link": link.name,
                "link_id": link.id,
                "direction": direction,
                "node": f"_w{link.id}",
                "ifname": in_port,
                "max_len": _max_len(profile, link.mtu),
                "seed": seed * 1_000_003 + link.id * 2 + (direction == "reverse"),
                "profile": profile_doc(profile),
            })
    return out


def _rule(queue: dict, lab: str) -> List[str]:
    return ["-t", "mangle", "-A", "PREROUTING", "-m", "physdev", "--physdev-in", queue["ifname"],
            "-m", "comment", "--comment",
            f"testbed {lab} {queue['link']} {queue['direction']}",
            "-j", "NFQUEUE", "--queue-num", str(queue["queue_num"])]


def read_stats(rec: procs.ProcRecord, fresh: bool = False) -> dict:
    """The line's stats file ({} if unreadable).

    The file is written every STATS_PERIOD_S, so it may lag the counters (a
    transfer shorter than that can be missing from it entirely). With
    ``fresh``, a live, ready line is asked (SIGUSR1, to its recorded pid) to
    write them now, and this returns the document it wrote: every packet the
    line has handled so far is counted in it.
    """
    try:
        with open(rec.stats) as fh:
            doc = json.load(fh)
    except (OSError, ValueError, TypeError):
        return {}
    if not fresh or not doc.get("ready") or "flushes" not in doc or doc.get("final") \
            or not procs.is_alive(rec.pid, rec.start):
        return doc
    before = doc["flushes"]
    os.kill(rec.pid, signal.SIGUSR1)  # the recorded pid of a line we started (start time checked)
    latest = {"doc": doc}

    def flushed() -> bool:  # or gone: then its last document is all there is
        latest["doc"] = read_stats(rec) or latest["doc"]
        return (latest["doc"].get("flushes", 0) > before or bool(latest["doc"].get("final"))
                or not procs.is_alive(rec.pid, rec.start))

    wait_until(flushed, f"stats of the delay line in {rec.netns}", pid=rec.pid,
               error=RunError, poll_s=0.005)
    return latest["doc"]


def config_path(rec: procs.ProcRecord) -> Path:
    """The config file of the delay line ``rec`` (beside its stats file)."""
    if not rec.stats or not rec.stats.endswith(".stats.json"):
        raise RunError(f"delay line in {rec.netns} has no stats file to find its config by")
    return Path(rec.stats[: -len(".stats.json")] + ".json")


def reconfigure(rec: procs.ProcRecord, profiles: Mapping[Tuple[int, str], dict],
                timeout_s: float = RELOAD_TIMEOUT_S) -> int:
    """Give the queues of line ``rec`` new profile documents; returns the generation.

    ``profiles`` maps (link id, "forward"|"reverse") to a :func:`profile_doc`;
    every key must be a queue of this line. Waits (polling its stats file)
    until the line reports the new generation; RunError if it does not or
    refuses part of the change.
    """
    path = config_path(rec)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read the delay line config {path}: {exc}") from exc
    queues = {(q.get("link_id"), q.get("direction")): q for q in cfg.get("queues", [])}
    missing = [key for key in profiles if key not in queues]
    if missing:
        raise RunError(f"delay line in {rec.netns} has no queue for link {missing[0][0]} "
                       f"{missing[0][1]}")
    before = read_stats(rec)
    if "generation" not in before:
        raise RunError(f"delay line in {rec.netns} (pid {rec.pid}) cannot reload its profile "
                       "(started by an older testbed); recreate the lab")
    for key, doc in profiles.items():
        queues[key]["profile"] = doc
    generation = int(cfg.get("generation", 0)) + 1
    cfg["generation"] = generation
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=1))
    os.replace(tmp, path)
    if not procs.is_alive(rec.pid, rec.start):
        raise DelayLineDied(f"delay line in {rec.netns} (pid {rec.pid}) is gone")
    os.kill(rec.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while True:
        stats = read_stats(rec)
        if int(stats.get("generation", -1)) >= generation:
            seen = set(before.get("errors") or [])
            refused = [e for e in stats.get("errors", [])
                       if str(e).startswith("reload") and e not in seen]
            if refused:
                raise RunError(f"delay line in {rec.netns}: {refused[-1]}")
            return generation
        if not procs.is_alive(rec.pid, rec.start):
            raise DelayLineDied(f"delay line in {rec.netns} (pid {rec.pid}) died on reload")
        if time.monotonic() > deadline:
            errors = stats.get("errors") or ["no error reported"]
            raise RunError(f"delay line in {rec.netns} did not take generation {generation} "
                           f"within {timeout_s:g} s: {errors[-1]}")
        time.sleep(0.005)


def _wait_ready(rec: procs.ProcRecord) -> None:
    """Until the line says it is ready, with no fixed deadline (testbed.readiness)."""
    def exited():
        return None if procs.is_alive(rec.pid, rec.start) else "it exited"

    try:
        wait_until(lambda: bool(read_stats(rec).get("ready")), f"delay line in {rec.netns}",
                   pid=rec.pid, exited=exited, error=RunError, poll_s=0.01)
    except RunError as exc:
        log = Path(rec.log).read_text(errors="replace").strip().splitlines() if rec.log else []
        procs.stop(rec)
        raise RunError(f"{exc}; its last output: {log[-1] if log else 'none'}") from None


def check_alive(records: List[procs.ProcRecord]) -> None:
    """Raise DelayLineDied if any delay line of the lab is gone."""
    dead = [r for r in records if r.kind == "delayline" and not procs.is_alive(r.pid, r.start)]
    if dead:
        names = ", ".join(f"{r.netns} (pid {r.pid})" for r in dead)
        raise DelayLineDied(
            f"delay line died: {names}; its links carry no traffic, results are not valid"
        )


class UserspaceBackend:
    """Delay, jitter, loss, duplicate, corrupt, reorder from NFQUEUE delay lines."""

    name = "userspace"

    def __init__(self, engine: str = "auto"):
        # "auto": the C engine (GSO packets whole, batched verdicts) when it is
        # built, else the pure-Python line; both have the same semantics.
        self.engine = engine

    def available(self):
        try:
            import netfilterqueue  # noqa: F401
        except ImportError as exc:
            return False, f"python package NetfilterQueue missing ({exc})"
        return True, "NFQUEUE delay line"

    def start(self, plan: LabPlan, lab_dir: Path, records: List[procs.ProcRecord],
              seed: int = 0) -> None:
        """Start every delay line, wait until bound, then divert traffic into it.

        Each process is appended to ``records`` as soon as it exists, so a
        failure half-way still leaves the caller every pid to stop.
        """
        for netns, queues in queue_plan(plan, seed).items():
            node = queues[0]["node"]
            cfg_path = lab_dir / f"delayline-{node}.json"
            stats_path = lab_dir / f"delayline-{node}.stats.json"
            cfg = {"lab": plan.lab, "node": node, "stats_path": str(stats_path),
                   "engine": self.engine, "queues": queues}
            cfg_path.write_text(json.dumps(cfg, indent=1))
            rec = procs.spawn([sys.executable, "-m", "testbed.delayline", str(cfg_path)],
                              netns, "delayline", str(lab_dir / f"delayline-{node}.log"),
                              str(stats_path))
            records.append(rec)
            _wait_ready(rec)
            for queue in queues:
                kernel_cmd(["iptables", "-w", "5", *_rule(queue, plan.lab)], netns)
