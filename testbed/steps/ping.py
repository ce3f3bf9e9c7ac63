"""``ping``: ICMP echo RTT and loss between the endpoints (iputils ping)."""

from __future__ import annotations

from testbed.steps.endpoint_options import PingOptions
from testbed.steps.kind import StepContext, StepKind, tool_runner

__all__ = ["STEP"]


def _run(ctx: StepContext, options: PingOptions) -> dict:
    return tool_runner("ping").run(ctx.src, ctx.dst, count=options.count, interval_s=options.interval_s,
                         size_bytes=options.size_bytes)


def _rtt_cdf(results):
    from testbed.report.plots import rtt_cdf

    return rtt_cdf(results)


STEP = StepKind("ping", PingOptions, _run, check_tools=lambda: tool_runner("ping").check(None),
                plots=(("rtt_cdf.png", _rtt_cdf),))
