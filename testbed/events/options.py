"""Scenario options of the ``timeline`` step (``measure.timeline``)."""

from __future__ import annotations

from typing import List, Optional

from pydantic import Field

from testbed.fields import CCName, Plain, StrictModel

__all__ = ["TimelineOptions"]


class TimelineOptions(StrictModel):
    """Throughput and RTT over time while scheduled events change the lab (testbed/events/timeline.py)."""

    duration_s: float = Field(8.0, gt=0, le=600.0, allow_inf_nan=False)
    interval_s: float = Field(0.1, ge=0.05, le=10.0, allow_inf_nan=False)
    ping_interval_s: float = Field(0.05, ge=0.01, le=10.0, allow_inf_nan=False)
    cc: Optional[CCName] = None  # the flow's congestion control; host default if None
    recover_fraction: float = Field(0.8, gt=0, le=1.0, allow_inf_nan=False)
    hold_s: float = Field(1.0, gt=0, le=60.0, allow_inf_nan=False)
    baseline_s: float = Field(2.0, gt=0, le=60.0, allow_inf_nan=False)
    port: int = Field(5301, ge=1024, le=65535)
    events: List[Plain] = Field(default_factory=list, max_length=100)

    def parsed_events(self, field: str = "measure.timeline.events"):
        """The events as testbed.events.model.Event objects (InputError naming the field)."""
        from testbed.events.model import parse_events

        return parse_events(self.events, field)
