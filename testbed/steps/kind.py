"""What a step kind is (:class:`StepKind`) and what its runner is given (:class:`StepContext`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from pydantic import BaseModel

__all__ = ["StepKind", "StepContext", "PlotBuilder", "SectionBuilder", "tool_runner"]

#: results.json document -> a matplotlib Figure, or None when no variant has the data
PlotBuilder = Callable[[Dict[str, Any]], Any]
#: the variants of results.json -> markdown lines (nothing when no variant ran the step)
SectionBuilder = Callable[[List[Dict[str, Any]]], List[str]]


def tool_runner(name: str):
    """The measurement runner ``name`` of :data:`testbed.measure.RUNNERS`, imported on first use
    (the tool modules and numpy stay out of scenario loading)."""
    from testbed.measure import RUNNERS

    return RUNNERS[name]


@dataclass
class StepContext:
    """What a step's runner may use: the lab, the endpoints, progress, the variant so far."""

    lab: Any
    src: Any = None
    dst: Any = None
    progress: Callable[[str], None] = lambda _m: None
    #: the variant's results.json entry as filled so far (a step may read earlier steps)
    entry: Dict[str, Any] = field(default_factory=dict)
    #: time.monotonic() when the lab started coming up
    up_started: float = field(default_factory=time.monotonic)

    def since_up_s(self) -> float:
        return round(time.monotonic() - self.up_started, 3)


@dataclass(frozen=True)
class StepKind:
    """One kind of measurement step, as scenarios name it under ``measure:``."""

    name: str
    #: the pydantic model of ``measure.<name>``
    options: Type[BaseModel]
    #: runs the step: (context, options) -> the data results.json keeps
    run: Callable[[StepContext, Any], Any]
    #: the variant key its data goes under (default: the name)
    result_key: Optional[str] = None
    #: uses every host of the lab instead of the two endpoints
    whole_lab: bool = False
    #: runs on this process's own engine (not tools in the lab): not run in a watched thread
    in_process: bool = False
    #: False for a step that only derives figures from earlier steps (no traffic, no progress line)
    measures: bool = True
    #: its rows carry their own verdict from the delay lines' lateness while each ran
    #: (testbed.collectives.verdict): the variant's lateness checks leave its time out
    judges_itself: bool = False
    #: checks the step's tools before anything is built (EnvironmentProblem, exit 3)
    check_tools: Optional[Callable[[], None]] = None
    #: the progress line for (options, context); default names the endpoints or the hosts
    describe: Optional[Callable[[Any, StepContext], str]] = None
    #: the step's section of report.md
    report_section: Optional[SectionBuilder] = None
    #: (file name, builder) of plots drawn across variants
    plots: Sequence[Tuple[str, PlotBuilder]] = ()
    #: plots drawn per variant: (results, directory) -> files written
    variant_plots: Optional[Callable[[Dict[str, Any], Path], List[Path]]] = None

    @property
    def key(self) -> str:
        return self.result_key or self.name

    def progress_line(self, options: Any, ctx: StepContext) -> str:
        if self.describe is not None:
            return self.describe(options, ctx)
        if self.whole_lab:
            return f"{self.name} over {len(ctx.lab.hosts())} hosts"
        return f"{self.name} {ctx.src.name} -> {ctx.dst.name}"
