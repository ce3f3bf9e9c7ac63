"""``owd``: timestamped UDP probes both ways, one-way delay and RFC 3550 jitter."""

from __future__ import annotations

from testbed.steps.endpoint_options import OwdOptions
from testbed.steps.kind import StepContext, StepKind, tool_runner

__all__ = ["STEP"]


def _run(ctx: StepContext, options: OwdOptions) -> dict:
    both = tool_runner("owd").run_both(ctx.src, ctx.dst, count=options.count, interval_ms=options.interval_ms,
                                   size_bytes=options.size_bytes)
    fwd = both["forward"]
    data = {"forward": fwd, "reverse": both["reverse"],
            "one_way_delay_ms": fwd.get("one_way_delay_ms"),
            "jitter_ms": fwd.get("jitter_ms"), "loss_pct": fwd.get("loss_pct")}
    for direction in ("forward", "reverse"):  # per-packet arrival lists are not kept
        (data.get(direction) or {}).pop("packets", None)
    return data


def _owd_histogram(results):
    from testbed.report.plots import owd_histogram

    return owd_histogram(results)


STEP = StepKind("owd", OwdOptions, _run, check_tools=lambda: tool_runner("owd").check(None),
                plots=(("owd_histogram.png", _owd_histogram),))
