"""``collective``: collective timing between all of the lab's hosts, nccl-tests style."""

from __future__ import annotations

from typing import List, Literal, Optional

from pydantic import Field, model_validator

from testbed.fields import CCName, SizeText, StrictModel
from testbed.steps.kind import StepContext, StepKind
from testbed.units import parse_size_bytes

__all__ = ["STEP", "CollectiveOptions"]


class CollectiveOptions(StrictModel):
    """Collective timing between the lab's hosts, nccl-tests style (testbed collective)."""

    op: Literal["allreduce", "reduce_scatter", "allgather", "broadcast", "reduce", "alltoall",
                "sendrecv"] = "allreduce"
    algorithm: Literal["ring", "tree", "rabenseifner", "hierarchical"] = "ring"
    sizes: List[SizeText] = Field(default_factory=lambda: ["64KiB", "1MiB", "4MiB"], min_length=1,
                                  max_length=64)
    iters: int = Field(5, ge=1, le=1000)
    warmup: int = Field(1, ge=0, le=100)
    gpus_per_host: int = Field(1, ge=1, le=64)
    nsocks: int = Field(1, ge=1, le=64)
    buffsize: SizeText = "4MiB"
    order: Literal["topology", "naive"] = "topology"
    protocol: Literal["eager", "rendezvous"] = "eager"
    window: int = Field(2, ge=1, le=64)
    cc: Optional[CCName] = None  # the engine's connections' congestion control; host default if None

    @model_validator(mode="after")
    def _algorithm_implements_op(self) -> "CollectiveOptions":
        from testbed.collectives.algorithms import algorithms_for

        if self.algorithm not in algorithms_for(self.op):
            raise ValueError(f"{self.algorithm} does not implement {self.op} "
                             f"(algorithms for {self.op}: {', '.join(algorithms_for(self.op))})")
        return self

    def sizes_bytes(self) -> List[int]:
        return [parse_size_bytes(s, f"measure.collective.sizes.{i}") for i, s in enumerate(self.sizes)]

    @property
    def buffsize_bytes(self) -> int:
        return parse_size_bytes(self.buffsize, "measure.collective.buffsize")


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
                judges_itself=True, in_process=True, describe=_describe, report_section=_section,
                plots=(("collective_time.png", _collective_time),))
