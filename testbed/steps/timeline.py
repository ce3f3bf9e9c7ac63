"""``timeline``: throughput and RTT over time while scheduled events change the lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from testbed.events.options import TimelineOptions
from testbed.steps.kind import StepContext, StepKind

__all__ = ["STEP"]


def _run(ctx: StepContext, options: TimelineOptions) -> dict:
    from testbed.events.timeline import run_timeline

    return run_timeline(ctx.lab, ctx.src, ctx.dst, options.duration_s, options.interval_s,
                        options.parsed_events(), ctx.progress, ping_interval_s=options.ping_interval_s,
                        port=options.port, recover_fraction=options.recover_fraction,
                        hold_s=options.hold_s, baseline_s=options.baseline_s, congestion=options.cc)


def _section(variants):
    from testbed.report.sections import timeline_section

    return timeline_section(variants)


def _plots(results: Dict[str, Any], directory: Path) -> List[Path]:
    """``timeline_<variant>.png`` for every variant that ran the timeline step."""
    from testbed.report.figures import variant_label
    from testbed.report.timeline_plot import plot_timeline

    out = []
    for index, variant in enumerate(results.get("variants") or []):
        if isinstance(variant.get("timeline"), dict):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in variant_label(variant, index))
            out.append(plot_timeline(variant["timeline"], directory / f"timeline_{safe}.png"))
    return out


STEP = StepKind("timeline", TimelineOptions, _run, report_section=_section, variant_plots=_plots)
