"""PNG plots of the multi-cloud steps: training step times and the events timeline.

Registered in :data:`testbed.plots.PLOTS`; built from results.json alone.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from matplotlib.figure import Figure

__all__ = ["training_steps", "timeline"]


def training_steps(results: Dict[str, Any]) -> Optional[Figure]:
    """Step time p50 per variant and placement, split into compute and exposed communication."""
    from testbed.plots import _new_figure, _variant_label

    bars: List[tuple] = []
    for index, variant in enumerate(results.get("variants") or []):
        data = variant.get("training")
        if not isinstance(data, dict):
            continue
        for placement, p in (data.get("placements") or {}).items():
            steps = p.get("steps") or []
            if not steps:
                continue
            step = (p.get("step_ms") or {}).get("p50")
            p99 = (p.get("step_ms") or {}).get("p99")
            compute = sorted(s["compute_max_ms"] for s in steps)[len(steps) // 2]
            bars.append((f"{_variant_label(variant, index)}\n{placement}", step, p99, min(compute, step)))
    if not bars:
        return None
    figure = _new_figure(width_in=max(6.0, 1.3 * len(bars) + 2))
    axes = figure.add_subplot()
    xs = list(range(len(bars)))
    compute = [b[3] for b in bars]
    comm = [b[1] - b[3] for b in bars]
    axes.bar(xs, compute, label="compute (slowest rank)", color="#4c72b0")
    axes.bar(xs, comm, bottom=compute, label="exposed communication", color="#dd8452")
    axes.errorbar(xs, [b[1] for b in bars], yerr=[[0] * len(bars), [b[2] - b[1] for b in bars]],
                  fmt="none", ecolor="black", capsize=4, label="p99")
    axes.set_xticks(xs, [b[0] for b in bars], fontsize=8)
    axes.set_ylabel("Step time p50 (ms)")
    axes.set_title(f"Training step time by placement: {results.get('scenario', '')}")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def timeline(results: Dict[str, Any]) -> Optional[Figure]:
    """Throughput and RTT through the scheduled events, one panel pair per variant."""
    from testbed.plots import _new_figure, _variant_label

    ran = [(i, v) for i, v in enumerate(results.get("variants") or []) if isinstance(v.get("timeline"), dict)]
    if not ran:
        return None
    figure = _new_figure(width_in=8.0, height_in=3.2 * len(ran))
    grid = figure.subplots(len(ran), 1, squeeze=False)
    for row, (index, variant) in enumerate(ran):
        data = variant["timeline"]
        axes = grid[row][0]
        tput = [(p["t_s"], p["mbps"]) for p in data.get("throughput") or [] if p.get("mbps") is not None]
        if tput:
            axes.plot([t for t, _ in tput], [m for _, m in tput], color="#4c72b0", label="TCP throughput")
        axes.set_ylabel("Mbit/s")
        rtt_axes = axes.twinx()
        rtt = [(p["t_s"], p["rtt_ms"]) for p in data.get("rtt") or [] if p.get("rtt_ms") is not None]
        if rtt:
            rtt_axes.plot([t for t, _ in rtt], [r for _, r in rtt], ".", color="#dd8452", markersize=2,
                          label="RTT")
        rtt_axes.set_ylabel("RTT (ms)")
        for event in data.get("events") or []:
            at = event.get("fired_at_s", event.get("at_s"))
            if isinstance(at, (int, float)):
                axes.axvline(at, color="gray", linestyle="--", linewidth=1)
                axes.text(at, axes.get_ylim()[1] * 0.95, f" {event.get('action')}", fontsize=7,
                          rotation=90, va="top")
        axes.set_title(f"{_variant_label(variant, index)}: throughput and RTT through the events")
        axes.set_xlabel("time (s)")
        axes.grid(True, alpha=0.3)
    return figure
