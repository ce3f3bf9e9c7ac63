"""A deliberately overloaded collective gets a warn or fail verdict with the reason (issue 13).

16 hosts on a star whose host links run at 5 Gbit/s with 1 ms each way, and
an explicit ``scale: 1``: a ring allreduce then asks 32 delay-line directions
for up to 5 Gbit/s each at once, far beyond what a small machine carries
faithfully. Every row must come out ``warn`` or ``fail`` and say why (a late
line, unconfigured drops, a saturated CPU or engine, or a scale too low); the
explicit scale is kept, and the decision records that it was not enough when
the machine's capacity is known (``testbed doctor --bench``).

(A lightly loaded lab's ``pass`` is not asserted here: on a shared machine the
other runs' load is evidence too. tests/unit/test_autoscale_verdict.py covers
the pass path from recorded snapshots.)
"""

from __future__ import annotations

import os

import pytest

from testbed import autoscale, capacity
from testbed.collectives.bench import run_sweep
from testbed.lab import state, teardown
from testbed.lab.lab import Lab

import helpers  # noqa: F401  (tests/helpers.py on the path via conftest.py)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

MIB = 1024 * 1024


def _lab(name: str, hosts: int, rate: str) -> Lab:
    if state.read_state(name) or helpers.lab_netns_names(name):
        teardown.teardown(name)  # left by an interrupted earlier run: ours by name
    return Lab.create("star", name=name, params={"hosts": hosts},
                      links={"fabric": {"rate": rate, "delay": "1ms"}}, scale=1)


def test_overloaded_rows_are_not_passed():
    lab = _lab("it-vover", 16, "5Gbit")
    try:
        doc = capacity.load_cached()
        decision = autoscale.decide(1.0, lab.plan, ("collective",), capacity_doc=doc)
        assert decision.scale == 1.0 and decision.mode == "explicit"
        if doc is not None:
            assert decision.enough is False, decision.reason
        rows = run_sweep(lab, "allreduce", "ring", [16 * MIB], iters=1, warmup=0,
                         scale_enough=decision.enough)
    finally:
        lab.destroy()
    for row in rows:
        print(row["bytes"], row["meas_over_model"], row["verdict"], row["verdict_reason"])
        assert row["verdict"] in ("warn", "fail"), row
        assert row["verdict_reason"], row
        assert row["saturation"]["lines"], "no delay line reported for the row"

