"""``steady``: time to steady throughput, derived from the ``tcp`` step's intervals (no traffic)."""

from __future__ import annotations

from testbed.steps.endpoint_options import SteadyOptions
from testbed.steps.kind import StepContext, StepKind

__all__ = ["STEP"]


def _run(ctx: StepContext, options: SteadyOptions) -> None:
    """Adds ``tcp.time_to_steady_s`` and ``time_to_steady_from_up_s`` to the variant."""
    from testbed.measure.steady import time_to_steady_s

    entry = ctx.entry
    if not entry.get("tcp"):
        return None
    steady_s = time_to_steady_s(entry["tcp"].get("intervals", []), options.tolerance_pct / 100.0)
    entry["tcp"]["time_to_steady_s"] = steady_s
    if steady_s is not None and "tcp_started_s" in entry:
        # from 'up' until the throughput is steady
        entry["time_to_steady_from_up_s"] = round(entry["tcp_started_s"] + steady_s, 3)
    return None


STEP = StepKind("steady", SteadyOptions, _run, measures=False)
