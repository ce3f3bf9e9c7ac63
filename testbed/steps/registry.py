"""The registry of step kinds: a scenario's ``measure:`` keys, in their default order.

Adding a step kind: write ``testbed/steps/<kind>.py`` with its options model,
runner, report section and plots in a :class:`~testbed.steps.kind.StepKind`,
and add it to :data:`STEPS` below. Nothing else changes: the scenario model,
the runner, preflight, the pytest plugin and the report read this dict.
"""

from __future__ import annotations

from typing import Dict, Type

from pydantic import BaseModel

from testbed.errors import InputError
from testbed.steps import collective, owd, path, ping, steady, storage, tcp, timeline, training, udp
from testbed.steps.kind import StepKind

__all__ = ["STEPS", "STEP_OPTIONS", "get_step"]

#: step kind -> its declaration, in the order steps run when a scenario gives no order
STEPS: Dict[str, StepKind] = {
    step.name: step
    for step in (ping.STEP, owd.STEP, tcp.STEP, udp.STEP, path.STEP, steady.STEP,
                 collective.STEP, training.STEP, storage.STEP, timeline.STEP)
}

#: step kind -> options model
STEP_OPTIONS: Dict[str, Type[BaseModel]] = {name: step.options for name, step in STEPS.items()}


def get_step(name: str) -> StepKind:
    """The step kind ``name``; InputError naming ``measure`` for an unknown one."""
    try:
        return STEPS[name]
    except KeyError:
        raise InputError("measure", f"unknown measurement step {name!r} (known: {', '.join(STEPS)})") from None
