"""Plot builders of the measurement steps, each from results.json alone (None: no data).

* :func:`rtt_cdf` (``rtt_cdf.png``, ping) -- empirical CDF of RTT samples, one line per variant;
* :func:`throughput` (``throughput.png``, tcp) -- throughput per interval over time;
* :func:`owd_histogram` (``owd_histogram.png``, owd) -- forward one-way delay, a panel per variant;
* :func:`collective_times` (``collective_time.png``, collective) -- time against size, model dashed.

The step kinds declare which file each builder draws (:mod:`testbed.steps.registry`);
:func:`testbed.report.plotting.make_plots` writes them.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from testbed.report.figures import new_figure, numbers, variant_label
from testbed.results import get_value

__all__ = ["rtt_cdf", "throughput", "owd_histogram", "collective_times"]


def rtt_cdf(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        samples = sorted(numbers(get_value(variant, "ping.samples_ms")))
        if samples:
            series.append((variant_label(variant, index), samples))
    if not series:
        return None
    figure = new_figure()
    axes = figure.add_subplot()
    for label, samples in series:
        count = len(samples)
        fractions = [(i + 1) / count for i in range(count)]
        axes.step(samples, fractions, where="post", label=f"{label} (n={count})")
    axes.set_title(f"Round-trip time CDF: {results.get('scenario', '')}")
    axes.set_xlabel("RTT (ms)")
    axes.set_ylabel("Fraction of pings")
    axes.set_ylim(0, 1.02)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def throughput(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        intervals = get_value(variant, "tcp.intervals") or []
        points = [
            (float(item["end_s"]), float(item["mbps"]))
            for item in intervals
            if isinstance(item, dict) and isinstance(item.get("end_s"), (int, float)) and isinstance(item.get("mbps"), (int, float))
        ]
        if points:
            series.append((variant_label(variant, index), points, get_value(variant, "tcp.time_to_steady_s")))
    if not series:
        return None
    figure = new_figure()
    axes = figure.add_subplot()
    for label, points, steady_s in series:
        times, rates = zip(*points)
        (line,) = axes.plot(times, rates, marker="o", markersize=3, label=label)
        if isinstance(steady_s, (int, float)) and not isinstance(steady_s, bool):
            axes.axvline(steady_s, color=line.get_color(), linestyle=":", alpha=0.7, label=f"{label}: steady")
    axes.set_title(f"TCP throughput over time: {results.get('scenario', '')}")
    axes.set_xlabel("Time since start (s)")
    axes.set_ylabel("Throughput (Mbit/s)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def owd_histogram(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        samples = numbers(get_value(variant, "owd.forward.samples_ms"))
        if samples:
            series.append((variant_label(variant, index), samples))
    if not series:
        return None
    figure = new_figure(7.0, 2.6 * len(series) + 0.8)
    figure.suptitle(f"One-way delay, forward direction: {results.get('scenario', '')}")
    panels = figure.subplots(len(series), 1, squeeze=False)
    for (label, samples), axes in zip(series, panels[:, 0]):
        axes.hist(samples, bins=min(50, max(5, len(samples) // 5)), color="tab:blue", alpha=0.8)
        axes.set_title(f"{label} (n={len(samples)})", fontsize="medium")
        axes.set_xlabel("One-way delay (ms)")
        axes.set_ylabel("Probes")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
    return figure


def collective_times(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        rows = [r for r in variant.get("collectives") or []
                if isinstance(r, dict) and isinstance(r.get("time_us"), (int, float))]
        if rows:
            series.append((variant_label(variant, index), rows))
    if not series:
        return None
    figure = new_figure()
    axes = figure.add_subplot()
    for label, rows in series:
        sizes = [r["bytes"] for r in rows]
        (line,) = axes.plot(sizes, [r["time_us"] / 1000.0 for r in rows], marker="o",
                            label=f"{label}: {rows[0].get('op')} {rows[0].get('algorithm')}")
        model = [(r["bytes"], r["model_time_us"] / 1000.0) for r in rows
                 if isinstance(r.get("model_time_us"), (int, float))]
        if model:
            axes.plot(*zip(*model), linestyle="--", color=line.get_color(), alpha=0.6,
                      label=f"{label}: alpha-beta model")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_title(f"Collective time versus size: {results.get('scenario', '')}")
    axes.set_xlabel("Size (bytes)")
    axes.set_ylabel("Time per operation (ms)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    return figure
