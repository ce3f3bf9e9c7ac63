"""The summary table ``testbed run`` prints at the end (rich), from results alone.

One row per variant: RTT mean (ms), forward one-way-delay jitter (ms), ping
loss (%), TCP throughput (Mbit/s), hops, path MTU (bytes) and the worst
fidelity verdict. Missing values print as ``-``. Below it, every collective,
training or storage row whose own verdict is not ``pass`` gets a line with
its reason: those rows are judged from their own time, not by the fidelity
checks.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from testbed.report.markdown import format_number
from testbed.results import get_value, overall_verdict
from testbed.units import format_size_bytes

__all__ = ["summary_table", "print_summary", "row_verdict_lines", "SUMMARY_COLUMNS"]

#: (column header, dotted paths in a variant, first present wins)
SUMMARY_COLUMNS: Sequence[Tuple[str, Tuple[str, ...]]] = (
    ("RTT ms", ("ping.rtt_ms.mean",)),
    ("Jitter ms", ("owd.forward.jitter_ms", "owd.jitter_ms")),
    ("Loss %", ("ping.loss_pct", "owd.forward.loss_pct", "owd.loss_pct")),
    ("TCP Mbit/s", ("tcp.throughput_mbps",)),
    ("Hops", ("path.hops",)),
    ("PMTU B", ("path.path_mtu",)),
    ("Scale", ("lab.scale",)),
)

_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _first(variant: Dict[str, Any], paths: Tuple[str, ...]) -> Any:
    for path in paths:
        value = get_value(variant, path)
        if value is not None:
            return value
    return None


def summary_table(results: Dict[str, Any]) -> Table:
    """A rich Table with one row per variant."""
    title = f"{results.get('scenario', 'results')}"
    if results.get("complete") is not True:
        title += " (INCOMPLETE)"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAVY, pad_edge=False)
    table.add_column("Variant", style="bold", no_wrap=True)
    for header, _paths in SUMMARY_COLUMNS:
        # Headers wrap at spaces in a narrow terminal, but never inside a word.
        table.add_column(header, justify="right", min_width=max(len(word) for word in header.split()))
    table.add_column("Fidelity", no_wrap=True, min_width=len("Fidelity"))
    for index, variant in enumerate(results.get("variants") or []):
        name = str(variant.get("name") or f"variant {index}")
        if variant.get("complete") is not True:
            name += " (incomplete)"
        cells = [format_number(_first(variant, paths)) for _header, paths in SUMMARY_COLUMNS]
        verdict = overall_verdict(variant)
        verdict_cell = f"[{_VERDICT_STYLE[verdict]}]{verdict}[/]" if verdict else "-"
        table.add_row(name, *cells, verdict_cell)
    return table


def _collective_label(row: Dict[str, Any]) -> str:
    """"allreduce ring 1MiB": the operation, algorithm and size of a collective row."""
    size = row.get("bytes")
    parts = [row.get("op", "collective"), row.get("algorithm"),
             format_size_bytes(size) if isinstance(size, int) else size]
    return " ".join(str(p) for p in parts if p is not None)


def row_verdict_lines(results: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(verdict, "<variant>: <row> <verdict>: <reason>") for every self-judged row that did not pass."""
    out = []
    for variant in results.get("variants") or []:
        name = variant.get("name") or "?"
        rows = [(_collective_label(r), r) for r in variant.get("collectives") or [] if isinstance(r, dict)]
        rows += [(key, variant[key]) for key in ("training", "storage") if isinstance(variant.get(key), dict)]
        for label, row in rows:
            if row.get("verdict") in ("warn", "fail"):
                out.append((row["verdict"], f"{name}: {label} {row['verdict']}: "
                                            f"{row.get('verdict_reason') or 'no reason given'}"))
    return out


def print_summary(results: Dict[str, Any], console: Optional[Console] = None) -> None:
    """Print the summary table (and the count of errors, if any)."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or a file: wide enough that no header is cut
            console = Console(width=max(console.width, 160))
    console.print(summary_table(results))
    for verdict, line in row_verdict_lines(results):
        console.print(Text(line, style=_VERDICT_STYLE[verdict]))
    errors = len(results.get("errors") or []) + sum(len(v.get("errors") or []) for v in results.get("variants") or [])
    if errors:
        console.print(f"[yellow]{errors} error(s) recorded: see report.md[/]")
