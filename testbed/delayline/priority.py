"""Scheduling for a delay line: how far it may push aside the traffic it carries.

netem runs in the kernel's softirq, ahead of every user process; a userspace
line at normal priority instead waits behind iperf3, collective workers and
the Python start-up of every step, and its packets leave late. But a line
that preempts everything also preempts the processes whose messages it
carries: every wake-up, and its short spin before each due time, holds a
core. Measured on the 2-core development machine (flagship ``--quick``, one
step per run; ``tests/integration/test_collectives_scale.py``, 8 hosts, a
4 MiB ring at scale 50 over direct links, latency-bound):

=====================  ======================  ===========================  ==================
line policy            transit UDP 100 Mbit/s  transit owd probes           8-host 4 MiB ring
                       (lateness p99, ms)      (lateness p99, ms)           (measured / model)
=====================  ======================  ===========================  ==================
normal                 1.0-1.6                 0.15-2.1                     1.02-1.22
nice -20               1.1-2.3                 0.09-0.40                    0.99-1.10
SCHED_FIFO 10          0.07-0.52               0.07-0.14                    1.15-1.42
=====================  ======================  ===========================  ==================

So the policy follows what the line handles:

* **A line that handles every wire packet** (a queue with loss or
  corruption: these must hit single packets, so the kernel hands over GSO
  packets cut into wire packets, tens of thousands a second) runs
  ``SCHED_FIFO`` at :data:`DEFAULT_PRIORITY`.
* **Every other line** (GSO packets whole, a few thousand a second; with
  a constant delay its reads are batched too, the C engine's
  ``read_batch``) runs at nice :data:`NICE` under the normal scheduler:
  first in line for a core, without preempting a collective at every
  message.

The config key ``rt_priority`` overrides the choice (0: nice only). Threads
inherit the policy. The kernel's real-time throttling
(``kernel.sched_rt_runtime_us``, 95 % by default) keeps a runaway line from
starving the machine. Where a policy is not allowed (no CAP_SYS_NICE, no
real-time budget in a container's cgroup) the line runs as it is and says so
in its stats (``sched``).
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_PRIORITY", "NICE", "is_constant", "per_packet", "priority_for", "raise_priority"]

#: low among real-time priorities: above every normal process, below the kernel's own RT threads
DEFAULT_PRIORITY = 10
#: the nice value of every other line (the normal scheduler's highest weight)
NICE = -20


def is_constant(profile: dict) -> bool:
    """A queue profile without per-packet draws: every packet gets the same delay."""
    return (float(profile.get("jitter_ms", 0.0)) <= 0.0 and not profile.get("loss_pct")
            and not profile.get("corrupt_pct") and not profile.get("reorder_pct")
            and not profile.get("duplicate_pct"))


def per_packet(profile: dict) -> bool:
    """A queue that must judge single wire packets (loss, corruption): no GSO packets whole."""
    return bool(profile.get("loss_pct") or profile.get("corrupt_pct"))


def priority_for(config: dict) -> int:
    """The real-time priority a line's config asks for (0: normal scheduler at NICE)."""
    if "rt_priority" in config:
        return int(config["rt_priority"])
    handles_wire_packets = any(per_packet(q.get("profile", {})) and q.get("gso", "auto") in ("auto", False)
                               for q in config.get("queues", []))
    return DEFAULT_PRIORITY if handles_wire_packets else 0


def raise_priority(priority: int = DEFAULT_PRIORITY) -> dict:
    """SCHED_FIFO ``priority`` for the calling process, or (0) nice :data:`NICE`; what it got."""
    if priority <= 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, NICE)
        except OSError as exc:
            return {"policy": "normal", "nice": os.getpriority(os.PRIO_PROCESS, 0),
                    "reason": f"nice {NICE} refused: {exc}"}
        return {"policy": "normal", "nice": NICE}
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError) as exc:
        return {"policy": "normal", "nice": 0, "reason": f"SCHED_FIFO refused: {exc}"}
    return {"policy": "fifo", "priority": priority}
