"""Markdown pieces of report.md: numbers, table cells, tables, ratios, dotted lookups."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Sequence

from testbed.results import get_value

__all__ = ["MISSING", "format_number", "cell", "table", "lookup", "ratio", "verdict_text"]

MISSING = "-"


def format_number(value: Any) -> str:
    """A compact, stable rendering: ``-`` for missing, 3-4 significant digits."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return MISSING
        size = abs(value)
        if size == 0:
            return "0"
        if size >= 100:
            return f"{value:.0f}"
        if size >= 10:
            return f"{value:.1f}"
        if size >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return cell(str(value))


def cell(text: str) -> str:
    """Make text safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def lookup(variant: Dict[str, Any], paths: str) -> Any:
    """The first present of ``|``-separated dotted paths in a variant."""
    for path in paths.split("|"):
        value = get_value(variant, path)
        if value is not None:
            return value
    return None


def ratio(first: Any, second: Any) -> str:
    """``second / first`` as ``1.23x``; ``-`` where it means nothing."""
    numbers = (int, float)
    if isinstance(first, bool) or isinstance(second, bool):
        return MISSING
    if not isinstance(first, numbers) or not isinstance(second, numbers):
        return MISSING
    if first == 0 or not math.isfinite(first) or not math.isfinite(second):
        return MISSING
    value = second / first
    # two significant digits below 0.1 (0.0014x, not 0.00x)
    return f"{value:.2f}x" if abs(value) >= 0.1 or value == 0 else f"{value:.2g}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def verdict_text(verdict: Any) -> str:
    """``**FAIL**`` / ``**WARN**`` stand out; other verdicts as they are."""
    if verdict in ("fail", "warn"):
        return f"**{verdict.upper()}**"
    return verdict or MISSING
