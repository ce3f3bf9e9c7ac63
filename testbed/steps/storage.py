"""``storage``: central object storage read through regional caches, every byte checked."""

from __future__ import annotations

from testbed.steps.kind import StepContext, StepKind
from testbed.storage.options import StorageOptions

__all__ = ["STEP"]


def _run(ctx: StepContext, options: StorageOptions) -> dict:
    from testbed.collectives.verdict import judged_step
    from testbed.storage.step import run_storage

    return judged_step(ctx.lab, lambda: run_storage(ctx.lab, options, ctx.progress),
                       (ctx.lab.doc.get("scale_decision") or {}).get("enough"))


def _section(variants):
    from testbed.report.sections import storage_section

    return storage_section(variants)


STEP = StepKind("storage", StorageOptions, _run, whole_lab=True, judges_itself=True,
                report_section=_section)
