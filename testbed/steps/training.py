"""``training``: data-parallel steps across the lab's sites, stragglers attributed."""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal

from pydantic import Field, field_validator

from testbed.fields import SizeText, StrictModel
from testbed.steps.kind import StepContext, StepKind
from testbed.units import parse_size_bytes

__all__ = ["STEP", "TrainingOptions"]


class TrainingOptions(StrictModel):
    """Data-parallel training steps across the lab's sites (testbed/collectives/training.py)."""

    model_size: SizeText = "64MB"
    steps: int = Field(5, ge=1, le=1000)
    warmup_steps: int = Field(1, ge=0, le=100)
    gpus_per_host: int = Field(1, ge=1, le=16)
    compute_ms: Dict[Literal["H100", "A100", "L40S", "V100", "T4"],
                     Annotated[float, Field(gt=0, le=600_000, allow_inf_nan=False)]] = Field(default_factory=dict)
    noise_pct: float = Field(5.0, ge=0, le=100, allow_inf_nan=False)
    algorithm: Literal["ring", "hierarchical"] = "ring"
    buckets: int = Field(1, ge=1, le=64)
    backward_share: float = Field(0.67, gt=0, le=1, allow_inf_nan=False)
    placements: List[Literal["naive", "topology"]] = Field(default_factory=lambda: ["naive", "topology"],
                                                           min_length=1, max_length=2)
    seed: int = Field(0, ge=0, le=2**31)

    @field_validator("placements")
    @classmethod
    def _unique(cls, value: List[str]) -> List[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"placements must not repeat: {value}")
        return value

    def engine_options(self) -> Dict[str, Any]:
        """The dict :func:`testbed.collectives.training.run_training` takes."""
        out = self.model_dump()
        out["model_size_bytes"] = parse_size_bytes(self.model_size, "measure.training.model_size")
        return out


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


STEP = StepKind("training", TrainingOptions, _run, whole_lab=True, in_process=True, judges_itself=True,
                report_section=_section, plots=(("training_steps.png", _training_steps),))
