"""``udp``: iperf3 UDP at a fixed offered rate: throughput, jitter, loss."""

from __future__ import annotations

from testbed.steps.endpoint_options import UdpOptions
from testbed.scale import iperf_at_real_scale
from testbed.steps.kind import StepContext, StepKind, tool_runner

__all__ = ["STEP"]


def _run(ctx: StepContext, options: UdpOptions) -> dict:
    scale = ctx.lab.scale
    kwargs = {"bitrate_bps": max(1, int(options.bitrate_bps / scale)), "duration_s": options.duration_s,
              "progress": ctx.progress}
    if options.size_bytes:
        kwargs["length_bytes"] = options.size_bytes
    return iperf_at_real_scale(tool_runner("udp").run(ctx.src, ctx.dst, **kwargs), scale)


STEP = StepKind("udp", UdpOptions, _run, check_tools=lambda: tool_runner("udp").check(None))
