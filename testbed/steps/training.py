"""``training``: data-parallel steps across the lab's sites, stragglers attributed."""

from __future__ import annotations

from testbed.collectives.options import TrainingOptions
from testbed.steps.kind import StepContext, StepKind

__all__ = ["STEP"]


def _run(ctx: StepContext, options: TrainingOptions) -> dict:
    from testbed.collectives.training import run_training
    from testbed.collectives.verdict import judged_step

    return judged_step(ctx.lab, lambda: run_training(ctx.lab, options.engine_options(), ctx.progress),
                       (ctx.lab.doc.get("scale_decision") or {}).get("enough"))


def _section(variants):
    from testbed.report.sections import training_section

    return training_section(variants)


def _training_steps(results):
    from testbed.report.training_plot import training_steps

    return training_steps(results)


STEP = StepKind("training", TrainingOptions, _run, whole_lab=True, in_process=True,
                report_section=_section, plots=(("training_steps.png", _training_steps),))
