"""The figure every plot is drawn on, and PNG files written atomically.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas
directly, so nothing touches pyplot's global state or needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Union

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure", "variant_label", "numbers", "DPI"]

DPI = 110


def numbers(values: Any) -> List[float]:
    """The finite-looking numbers of a list (bools and anything else left out)."""
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def variant_label(variant: Dict[str, Any], index: int) -> str:
    return str(variant.get("name") or f"variant {index}")


def new_figure(width_in: float = 7.0, height_in: float = 4.2) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, target: Union[str, Path]) -> Path:
    """Write ``figure`` as PNG to ``target`` atomically (a temp file renamed over it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        figure.savefig(tmp, format="png")
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
