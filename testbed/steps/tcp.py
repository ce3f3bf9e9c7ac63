"""``tcp``: iperf3 TCP throughput, retransmits and per-interval rate, at real scale."""

from __future__ import annotations

from testbed.steps.endpoint_options import TcpOptions
from testbed.scale import iperf_at_real_scale
from testbed.steps.kind import StepContext, StepKind, tool_runner

__all__ = ["STEP"]


def _run(ctx: StepContext, options: TcpOptions) -> dict:
    ctx.entry["tcp_started_s"] = ctx.since_up_s()  # the steady step counts from 'up'
    data = tool_runner("tcp").run(ctx.src, ctx.dst, duration_s=options.duration_s, streams=options.streams,
                              congestion=options.cc, window_bytes=options.window_bytes)
    return iperf_at_real_scale(data, ctx.lab.scale)


def _throughput(results):
    from testbed.report.plots import throughput

    return throughput(results)


STEP = StepKind("tcp", TcpOptions, _run, check_tools=lambda: tool_runner("tcp").check(None),
                plots=(("throughput.png", _throughput),))
