"""Every PNG plot of a run, made from results.json alone (matplotlib, Agg backend, no pyplot).

The plots are the step kinds' own (:mod:`testbed.steps.registry`): for
example ``rtt_cdf.png`` (ping), ``owd_histogram.png`` (owd),
``throughput.png`` (tcp), ``collective_time.png``, ``training_steps.png`` and
``timeline_<variant>.png``, and each variant's lab picture ``lab_<variant>.png``
(:mod:`testbed.report.lab_plot`, from any run). A plot whose data no variant has is skipped, not
drawn empty. :func:`replot` re-makes the plots and the report of a saved run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

from testbed.report.document import write_report
from testbed.report.figures import save_figure
from testbed.report.lab_plot import lab_pictures
from testbed.results import load_results
from testbed.steps.kind import PlotBuilder
from testbed.steps.registry import STEPS

__all__ = ["make_plots", "replot", "PLOTS"]

#: (file name, builder) of every step kind's plots across variants, in registry order
PLOTS: Sequence[Tuple[str, PlotBuilder]] = tuple(plot for step in STEPS.values() for plot in step.plots)


def make_plots(results: Dict[str, Any], out_dir: Union[str, Path]) -> List[Path]:
    """Draw every plot the results have data for into ``out_dir``; return the files."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    for file_name, build in PLOTS:
        figure = build(results)
        if figure is not None:
            written.append(save_figure(figure, directory / file_name))
    for step in STEPS.values():
        if step.variant_plots is not None:
            written += step.variant_plots(results, directory)
    written += lab_pictures(results, directory)  # every variant's lab, whatever steps ran
    return written


def replot(results_path: Union[str, Path], out_dir: Union[str, Path]) -> List[Path]:
    """Re-make the plots and ``report.md`` of a saved run; return the plot files."""
    results = load_results(results_path)
    plots = make_plots(results, out_dir)
    write_report(results, plots, Path(out_dir) / "report.md")
    return plots
