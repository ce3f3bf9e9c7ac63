"""The training step's plot: step time per variant and placement (``training_steps.png``).

Declared by the ``training`` step kind (:mod:`testbed.steps.training`); built
from results.json alone.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from matplotlib.figure import Figure

from testbed.report.figures import new_figure, variant_label

__all__ = ["training_steps"]


def training_steps(results: Dict[str, Any]) -> Optional[Figure]:
    """Step time p50 per variant and placement, split into compute and exposed communication."""
    bars: List[tuple] = []
    for index, variant in enumerate(results.get("variants") or []):
        data = variant.get("training")
        if not isinstance(data, dict):
            continue
        for placement, p in (data.get("placements") or {}).items():
            steps = p.get("steps") or []
            if not steps:
                continue
            step = (p.get("step_ms") or {}).get("p50")
            p99 = (p.get("step_ms") or {}).get("p99")
            compute = sorted(s["compute_max_ms"] for s in steps)[len(steps) // 2]
            bars.append((f"{variant_label(variant, index)}\n{placement}", step, p99, min(compute, step)))
    if not bars:
        return None
    figure = new_figure(width_in=max(6.0, 1.3 * len(bars) + 2))
    axes = figure.add_subplot()
    xs = list(range(len(bars)))
    compute = [b[3] for b in bars]
    comm = [b[1] - b[3] for b in bars]
    axes.bar(xs, compute, label="compute (slowest rank)", color="#4c72b0")
    axes.bar(xs, comm, bottom=compute, label="exposed communication", color="#dd8452")
    axes.errorbar(xs, [b[1] for b in bars], yerr=[[0] * len(bars), [b[2] - b[1] for b in bars]],
                  fmt="none", ecolor="black", capsize=4, label="p99")
    axes.set_xticks(xs, [b[0] for b in bars], fontsize=8)
    axes.set_ylabel("Step time p50 (ms)")
    axes.set_title(f"Training step time by placement: {results.get('scenario', '')}")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return figure
