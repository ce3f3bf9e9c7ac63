"""``lab_<variant>.png``: each variant's lab drawn (nodes by role and site, links with rate, delay, loss).

Drawn from the variant's ``lab.graph`` in results.json (:func:`testbed.graph.graph_doc`,
recorded by the runner), so a saved run re-makes it; a variant without it
(an older results.json) has no picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from testbed.graph import figure
from testbed.report.figures import save_figure, variant_label

__all__ = ["lab_pictures"]


def lab_pictures(results: Dict[str, Any], directory: Path) -> List[Path]:
    out = []
    for index, variant in enumerate(results.get("variants") or []):
        graph = (variant.get("lab") or {}).get("graph") if isinstance(variant, dict) else None
        if not isinstance(graph, dict) or not graph.get("nodes"):
            continue
        name = variant_label(variant, index)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        out.append(save_figure(figure(graph, f"lab of {name}"), directory / f"lab_{safe}.png"))
    return out
