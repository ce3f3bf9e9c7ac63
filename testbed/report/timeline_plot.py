"""The picture of a timeline: throughput and RTT over time, the events marked.

:func:`plot_timeline` draws the document :func:`testbed.events.timeline.run_timeline`
returns (it reads that document only, so a saved run can be re-plotted):

* top: TCP throughput per interval (a step line), the throughput outage of
  each disruptive event shaded;
* bottom: ping RTT per probe, lost probes as red ticks along the bottom;
* both: a vertical line at each event's actual time, labelled.

Built on ``matplotlib.figure.Figure`` with the Agg canvas, as
:mod:`testbed.report.figures` makes them: no pyplot state, no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Union

from matplotlib.figure import Figure

from testbed.report.figures import new_figure, save_figure

__all__ = ["plot_timeline", "timeline_figure"]

_COLOURS = {"link_down": "tab:red", "link_up": "tab:green", "set_profile": "tab:orange",
            "restore_profile": "tab:olive", "failover": "tab:purple", "failback": "tab:cyan"}


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def timeline_figure(data: Dict[str, Any]) -> Figure:
    """The figure for one timeline document."""
    figure = new_figure(8.0, 5.6)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    duration = data.get("duration_s") if _num(data.get("duration_s")) else None

    steps = [s for s in data.get("throughput") or []
             if _num(s.get("t_s")) and _num(s.get("dt_s")) and _num(s.get("mbps"))]
    if steps:
        xs: List[float] = []
        ys: List[float] = []
        for s in steps:
            xs += [s["t_s"], s["t_s"] + s["dt_s"]]
            ys += [s["mbps"], s["mbps"]]
        top.plot(xs, ys, color="tab:blue", linewidth=1.2, label="TCP throughput")
    for item in data.get("analysis") or []:
        start, end = item.get("outage_start_s"), item.get("outage_end_s")
        if _num(start) and _num(end) and end > start:
            top.axvspan(start, end, color=_COLOURS.get(item.get("kind"), "gray"), alpha=0.12)
    top.set_ylabel("Throughput (Mbit/s)")
    top.set_ylim(bottom=0)
    top.grid(True, alpha=0.3)
    top.set_title(f"Through the events: {data.get('src', '?')} -> {data.get('dst', '?')}")

    probes = [p for p in data.get("rtt") or [] if _num(p.get("t_s"))]
    answered = [(p["t_s"], p["rtt_ms"]) for p in probes if _num(p.get("rtt_ms"))]
    lost = [p["t_s"] for p in probes if p.get("rtt_ms") is None]
    if answered:
        bottom.plot([t for t, _ in answered], [r for _, r in answered], ".", color="tab:gray",
                    markersize=3, label="ping RTT")
    if lost:
        bottom.plot(lost, [0] * len(lost), "|", color="tab:red", markersize=10,
                    label=f"lost probes ({len(lost)})")
    bottom.set_ylabel("RTT (ms)")
    bottom.set_xlabel("Time since start (s)")
    bottom.set_ylim(bottom=0)
    bottom.grid(True, alpha=0.3)
    if answered or lost:
        bottom.legend(loc="upper right", fontsize="small")

    for record in data.get("events") or []:
        at = record.get("actual_s")
        if not _num(at):
            continue
        colour = _COLOURS.get(record.get("kind"), "black")
        for axes in (top, bottom):
            axes.axvline(at, color=colour, linestyle="--", linewidth=1)
        label = record.get("label") or f"{record.get('kind')} {record.get('link')}"
        top.annotate(label, xy=(at, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                     textcoords="offset points", rotation=90, va="top", ha="left",
                     fontsize="x-small", color=colour)
    if duration:
        top.set_xlim(0, duration)
    return figure


def plot_timeline(data: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Write the timeline PNG to ``path`` (atomically); returns the path."""
    return save_figure(timeline_figure(data), path)
