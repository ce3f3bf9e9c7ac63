"""A verdict on every collective row: did the emulator, not the links, set its time?

Around each size :func:`snapshot` reads the lab's delay-line statistics (the
lateness histogram and the kernel's queue drops of every line direction) and
the machine's CPU counters; :func:`judge` turns the difference into evidence
for that row alone and a verdict with a one-line reason:

=========  ==================================================================
verdict    when
=========  ==================================================================
``fail``   a line direction's lateness p99 above :data:`LATE_FAIL_MS`, or the
           kernel dropped packets a line could not take in time (NFQUEUE
           queue full: losses nobody configured)
``warn``   lateness p99 above :data:`LATE_WARN_MS` (the fidelity check's
           limit), the machine's CPU busy above :data:`CPU_BUSY_WARN_PCT`,
           the engine's CPU share at or above :data:`ENGINE_BUSY_SHARE`, or an
           explicit ``scale`` below what the load needs
           (:func:`testbed.autoscale.explicit`)
``pass``   none of these
=========  ==================================================================

Drops the profile asks for (configured loss, a full configured queue) are
link behaviour and do not count. With the netem backend there are no lines
to read; CPU and the engine's share still count.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from testbed.delayline.latehist import LatenessHistogram

__all__ = ["LATE_WARN_MS", "LATE_FAIL_MS", "CPU_BUSY_WARN_PCT", "ENGINE_BUSY_SHARE", "snapshot",
           "judge", "judged_step"]

LATE_WARN_MS = 1.0  # fidelity.LATE_WARN_MS
LATE_FAIL_MS = 5.0  # a ring step's latency off by more than the per-hop delays we emulate
CPU_BUSY_WARN_PCT = 90.0  # fidelity.CPU_BUSY_WARN_PCT
ENGINE_BUSY_SHARE = 0.9  # table.ENGINE_BUSY_SHARE
MIN_PACKETS = 100  # a line direction that carried fewer is not judged on lateness


def _cpu_times():
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def snapshot(lab) -> Dict[str, Any]:
    """Delay-line counters per line direction, and the CPU counters, now."""
    lines = {}
    for doc in lab.delay_line_stats():
        node = doc.get("netns", "?").rsplit(".", 1)[-1]
        for q in doc.get("queues", []):
            key = f"{q.get('link')}:{q.get('direction')}@{node}"
            lines[key] = {"hist": dict(q.get("late_hist") or {}),
                          "p99_ms": (q.get("late_ms") or {}).get("p99"),
                          "received": int(q.get("received") or 0),
                          "dropped_queue": int(q.get("dropped_queue") or 0)}
    return {"lines": lines, "cpu": _cpu_times()}


def _delta_hist(before: Mapping, after: Mapping) -> LatenessHistogram:
    diff = {k: int(v) - int(before.get(k, 0)) for k, v in after.items()}
    return LatenessHistogram.from_sparse({k: v for k, v in diff.items() if v > 0})


def judge(before: Mapping[str, Any], after: Mapping[str, Any], engine_cpu_share: Optional[float] = None,
          scale_enough: Optional[bool] = None, scale: float = 1.0) -> Dict[str, Any]:
    """{"verdict", "reason", "evidence"} for what happened between the two snapshots."""
    worst_late, worst_line, drops, drop_line = None, None, 0, None
    per_line = {}
    for key, now in after.get("lines", {}).items():
        was = before.get("lines", {}).get(key, {"hist": {}, "received": 0, "dropped_queue": 0})
        packets = now["received"] - was["received"]
        dropped = now["dropped_queue"] - was["dropped_queue"]
        if dropped > drops:
            drops, drop_line = dropped, key
        if packets < MIN_PACKETS:
            continue
        if now["hist"] or was["hist"]:
            p99_s = _delta_hist(was["hist"], now["hist"]).percentile_s(0.99)
            p99 = None if p99_s is None else round(p99_s * 1000.0, 3)
        else:  # a line without a histogram: its p99 since it started
            p99 = now.get("p99_ms")
        per_line[key] = {"packets": packets, "late_p99_ms": p99, "kernel_dropped": dropped}
        if p99 is not None and (worst_late is None or p99 > worst_late):
            worst_late, worst_line = p99, key
    busy_t = after["cpu"][0] - before["cpu"][0]
    total_t = after["cpu"][1] - before["cpu"][1]
    busy = round(100.0 * busy_t / total_t, 1) if total_t > 0 else None
    evidence = {"late_p99_ms": worst_late, "late_line": worst_line, "kernel_dropped": drops,
                "cpu_busy_pct": busy, "engine_cpu_share": engine_cpu_share, "lines": per_line}
    if drops > 0:
        verdict, reason = "fail", (f"the kernel dropped {drops} packets that delay line {drop_line} "
                                   f"could not take: losses nobody configured")
    elif worst_late is not None and worst_late > LATE_FAIL_MS:
        verdict, reason = "fail", (f"delay line {worst_line} ran {worst_late:.1f} ms late (p99): "
                                   f"the machine could not keep up")
    elif worst_late is not None and worst_late > LATE_WARN_MS:
        verdict, reason = "warn", f"delay line {worst_line} ran {worst_late:.2f} ms late (p99)"
    elif busy is not None and busy > CPU_BUSY_WARN_PCT:
        verdict, reason = "warn", f"the machine's CPU was {busy:.0f} % busy: the emulator may be the limit"
    elif engine_cpu_share is not None and engine_cpu_share >= ENGINE_BUSY_SHARE:
        verdict, reason = "warn", (f"the engine used {engine_cpu_share:.2f} of a CPU: its own "
                                   f"per-message cost may be in the time")
    elif scale_enough is False:
        verdict, reason = "warn", f"scale {scale:g} is below what this load needs on this machine"
    else:
        verdict, reason = "pass", "delay lines on time, no unconfigured drops, CPU not saturated"
    if verdict != "pass" and scale_enough is False and "scale" not in reason:
        reason += f"; scale {scale:g} was too low for this load"
    return {"verdict": verdict, "reason": reason, "evidence": evidence}


def judged_step(lab, step, scale_enough: Optional[bool] = None) -> Dict[str, Any]:
    """Run ``step()`` (a training or storage step: it returns a dict) and add the verdict of
    the whole step to it (``verdict``, ``verdict_reason``, ``saturation``)."""
    before = snapshot(lab)
    data = step()
    judged = judge(before, snapshot(lab), None, scale_enough, float(getattr(lab, "scale", 1.0)))
    if isinstance(data, dict):
        data.update(verdict=judged["verdict"], verdict_reason=judged["reason"],
                    saturation=judged["evidence"])
    return data
