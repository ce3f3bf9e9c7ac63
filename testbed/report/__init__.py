"""Everything a person reads of a run, made from results.json alone (a saved run can be re-made).

* :mod:`~testbed.report.markdown`: table cells and numbers as report.md prints them;
* :mod:`~testbed.report.figures`: the matplotlib figure and PNG writing every plot uses;
* :mod:`~testbed.report.plots`, :mod:`~testbed.report.training_plot`,
  :mod:`~testbed.report.timeline_plot`: the plot builders;
* :mod:`~testbed.report.sections`: the report sections of the collective,
  training, storage and timeline steps and of egress cost;
* :mod:`~testbed.report.document`: report.md (header, metric tables, the
  steps' sections from the step registry, fidelity, emulator, errors, plots);
* :mod:`~testbed.report.plotting`: every plot of a run, from the step registry;
* :mod:`~testbed.report.summary`: the terminal summary table.
"""
