"""Scenario options of the ``collective`` and ``training`` steps (``measure.collective``, ``measure.training``)."""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from testbed.fields import CCName, SizeText, StrictModel
from testbed.units import parse_size_bytes

__all__ = ["CollectiveOptions", "TrainingOptions"]


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
