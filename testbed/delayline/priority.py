"""Real-time scheduling for a delay line: the line preempts the traffic it carries.

netem runs in the kernel's softirq, ahead of every user process; a userspace
line at normal priority instead waits behind iperf3, collective workers and
the Python start-up of every step, and packets leave late. Measured on the
2-core development machine (flagship ``--quick``, one step per run): one-way
delay probes at 100 packets/s came out 0.7-2.1 ms late (p99) over transit at
normal priority, 0.07-0.13 ms with SCHED_FIFO; a 10 Gbit/s TCP test 3.0-3.5 ms
late, 1.2-1.6 ms with it.

The line asks for ``SCHED_FIFO`` at :data:`DEFAULT_PRIORITY` (config key
``rt_priority``; 0 keeps normal scheduling). Its threads inherit the policy.
The kernel's real-time throttling (``kernel.sched_rt_runtime_us``, 95 % by
default) keeps a runaway line from starving the machine, and the line sleeps
in ``ppoll`` between packets. Where the policy is not allowed (no
CAP_SYS_NICE, an RT budget of 0 in a container's cgroup) the line runs at
normal priority and says so in its stats (``sched``).
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_PRIORITY", "raise_priority"]

#: low among real-time priorities: above every normal process, below the kernel's own RT threads
DEFAULT_PRIORITY = 10


def raise_priority(priority: int = DEFAULT_PRIORITY) -> dict:
    """Switch the calling process to SCHED_FIFO ``priority``; what it got, for the stats."""
    if priority <= 0:
        return {"policy": "normal", "priority": 0, "reason": "rt_priority 0 in the config"}
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError) as exc:
        return {"policy": "normal", "priority": 0, "reason": f"SCHED_FIFO refused: {exc}"}
    return {"policy": "fifo", "priority": priority}
