"""PNG plots made from results.json alone (matplotlib, Agg backend, no pyplot).

* ``rtt_cdf.png`` -- empirical CDF of ping RTT samples, one line per variant;
* ``throughput.png`` -- TCP throughput per interval over time, one line per variant;
* ``owd_histogram.png`` -- forward one-way-delay histogram, one panel per variant.

A plot whose data no variant has is skipped, not drawn empty. Figures are built
with ``matplotlib.figure.Figure`` and the Agg canvas directly, so nothing
touches pyplot's global state or needs a display. :func:`replot` re-makes the
plots and the report of a saved run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from testbed import multicloud_plots
from testbed.results import get_value

__all__ = ["make_plots", "replot", "save_figure", "PLOTS"]

_DPI = 110


def _numbers(values: Any) -> List[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _variant_label(variant: Dict[str, Any], index: int) -> str:
    return str(variant.get("name") or f"variant {index}")


def _new_figure(width_in: float = 7.0, height_in: float = 4.2) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _rtt_cdf(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        samples = sorted(_numbers(get_value(variant, "ping.samples_ms")))
        if samples:
            series.append((_variant_label(variant, index), samples))
    if not series:
        return None
    figure = _new_figure()
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


def _throughput(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        intervals = get_value(variant, "tcp.intervals") or []
        points = [
            (float(item["end_s"]), float(item["mbps"]))
            for item in intervals
            if isinstance(item, dict) and isinstance(item.get("end_s"), (int, float)) and isinstance(item.get("mbps"), (int, float))
        ]
        if points:
            series.append((_variant_label(variant, index), points, get_value(variant, "tcp.time_to_steady_s")))
    if not series:
        return None
    figure = _new_figure()
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


def _owd_histogram(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        samples = _numbers(get_value(variant, "owd.forward.samples_ms"))
        if samples:
            series.append((_variant_label(variant, index), samples))
    if not series:
        return None
    figure = _new_figure(7.0, 2.6 * len(series) + 0.8)
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


def _collective_times(results: Dict[str, Any]) -> Optional[Figure]:
    series = []
    for index, variant in enumerate(results.get("variants") or []):
        rows = [r for r in variant.get("collectives") or []
                if isinstance(r, dict) and isinstance(r.get("time_us"), (int, float))]
        if rows:
            series.append((_variant_label(variant, index), rows))
    if not series:
        return None
    figure = _new_figure()
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


#: (file name, builder) -- the registry make_plots walks, in report order.
PLOTS: Sequence[Tuple[str, Callable[[Dict[str, Any]], Optional[Figure]]]] = (
    ("rtt_cdf.png", _rtt_cdf),
    ("throughput.png", _throughput),
    ("owd_histogram.png", _owd_histogram),
    ("collective_time.png", _collective_times),
    ("training_steps.png", multicloud_plots.training_steps),
)


def save_figure(figure: Figure, target: Union[str, Path]) -> Path:
    """Write ``figure`` as PNG to ``target`` atomically (a temp file renamed over it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        figure.savefig(tmp, format="png")
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def make_plots(results: Dict[str, Any], out_dir: Union[str, Path]) -> List[Path]:
    """Draw every plot the results have data for into ``out_dir``; return the files."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    for file_name, build in PLOTS:
        figure = build(results)
        if figure is not None:
            written.append(save_figure(figure, directory / file_name))
    written += _timelines(results, directory)
    return written


def _timelines(results: Dict[str, Any], directory: Path) -> List[Path]:
    """``timeline_<variant>.png`` for every variant that ran the timeline step."""
    from testbed.timeline_plot import plot_timeline

    out = []
    for index, variant in enumerate(results.get("variants") or []):
        if isinstance(variant.get("timeline"), dict):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in _variant_label(variant, index))
            out.append(plot_timeline(variant["timeline"], directory / f"timeline_{safe}.png"))
    return out


def replot(results_path: Union[str, Path], out_dir: Union[str, Path]) -> List[Path]:
    """Re-make the plots and ``report.md`` of a saved run; return the plot files."""
    from testbed.report import write_report
    from testbed.results import load_results

    results = load_results(results_path)
    plots = make_plots(results, out_dir)
    write_report(results, plots, Path(out_dir) / "report.md")
    return plots
