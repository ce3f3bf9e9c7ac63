"""``collective``: collective timing between all of the lab's hosts, nccl-tests style."""

from __future__ import annotations

from typing import List

from testbed.collectives.options import CollectiveOptions
from testbed.steps.kind import StepContext, StepKind

__all__ = ["STEP"]


def _run(ctx: StepContext, options: CollectiveOptions) -> List[dict]:
    from testbed.collectives.bench import run_sweep

    return run_sweep(ctx.lab, options.op, options.algorithm, options.sizes_bytes(),
                     gpus_per_host=options.gpus_per_host, iters=options.iters,
                     warmup=options.warmup, nsocks=options.nsocks,
                     buffsize_bytes=options.buffsize_bytes, order=options.order,
                     protocol=options.protocol, window=options.window, cc=options.cc,
                     progress=ctx.progress, scale_enough=_scale_enough(ctx.lab))


def _scale_enough(lab):
    """Whether the lab's scale carried the load (testbed.autoscale), for the rows' verdicts."""
    return (lab.doc.get("scale_decision") or {}).get("enough")


def _describe(options: CollectiveOptions, ctx: StepContext) -> str:
    return f"collective {options.op}/{options.algorithm} over {len(ctx.lab.hosts())} hosts"


def _section(variants):
    from testbed.report.sections import collectives_section

    return collectives_section(variants)


def _collective_time(results):
    from testbed.report.plots import collective_times

    return collective_times(results)


STEP = StepKind("collective", CollectiveOptions, _run, result_key="collectives", whole_lab=True,
                in_process=True, describe=_describe, report_section=_section,
                plots=(("collective_time.png", _collective_time),))
