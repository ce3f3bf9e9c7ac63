"""``path``: hop count by TTL-limited probes and the path MTU, with the routers named."""

from __future__ import annotations

from typing import List, Optional

from testbed.steps.endpoint_options import PathOptions
from testbed.steps.kind import StepContext, StepKind, tool_runner

__all__ = ["STEP", "hops"]


def hops(lab, src: str, dst: str, routers: List[Optional[str]]) -> dict:
    """Name the routers on the path and count the hops between the two sites.

    ``hops`` = routers outside the endpoints' own sites + 1: the direct
    interconnect is 1 hop, transit is one more per transit router.
    """
    by_ip = lab.plan.node_by_address()
    names = [by_ip.get(r) for r in routers if r]
    sites = {lab.node(src).site, lab.node(dst).site}
    outside = [n for n in names if n and lab.node(n).site not in sites]
    return {"hops": len(outside) + 1, "router_names": names}


def _run(ctx: StepContext, options: PathOptions) -> dict:
    data = tool_runner("path").run(ctx.src, ctx.dst, max_hops=options.max_hops)
    data.update(hops(ctx.lab, ctx.src.name, ctx.dst.name, data.get("routers", [])))
    return data


STEP = StepKind("path", PathOptions, _run, check_tools=lambda: tool_runner("path").check(None))
