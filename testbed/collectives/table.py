"""Result rows and a table printed like nccl-tests', plus size parsing and sweeps.

Columns as nccl-tests prints its out-of-place set (size(B) count type redop
root time(us) algbw(GB/s) busbw(GB/s) #wrong), then ``model(us)`` -- the
alpha-beta model of the algorithm -- and ``meas/model``. Times are formatted
as nccl-tests does (2 decimals below 100 us, 1 below 10 ms, none above);
GB are 1e9 bytes. The footer repeats nccl-tests' "# Out of bounds values"
and "# Avg bus bandwidth" lines.

:func:`row_dict` is the machine-readable row (``--json``); it carries the
results.json collective keys (op, algorithm, ranks, bytes, time_us,
algbw_gbps, busbw_gbps, model_time_us, correct) plus the table's others.

Sizes: :func:`parse_size` reads ``4M`` as nccl-tests' ``-b``/``-e`` do (K, M,
G, T are powers of 1024; see :func:`testbed.units.parse_size_bytes`).
:func:`size_sweep` is nccl-tests' loop: multiply by ``-f`` when it is above
1, else add ``-i`` bytes (default 1 MiB).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence

from testbed.collectives import ops
from testbed.errors import InputError
from testbed.units import parse_size_bytes

__all__ = [
    "row_dict",
    "format_header",
    "format_row",
    "format_footer",
    "format_table",
    "format_time_us",
    "parse_size",
    "size_sweep",
    "MAX_SWEEP_SIZES",
    "DEFAULT_STEP_BYTES",
]

DEFAULT_STEP_BYTES = 1024 * 1024  # nccl-tests' -i default
MAX_SWEEP_SIZES = 10000


def row_dict(op: str, algorithm: str, ranks: int, count: int, time_us: Optional[float],
             wrong: Optional[int], root: Optional[int] = None,
             model_time_us: Optional[float] = None, dtype: str = ops.DTYPE_NAME) -> Dict[str, Any]:
    """One result row (JSON-ready: no NaN or inf; unknown values are None)."""
    spec = ops.op_spec(op)
    size = ops.size_bytes(op, count, ranks)
    have_time = time_us is not None and time_us > 0
    algbw = ops.algbw_gbps(size, time_us) if have_time else None
    busbw = ops.busbw_gbps(op, ranks, size, time_us) if have_time else None
    ratio = (time_us / model_time_us
             if have_time and model_time_us is not None and model_time_us > 0 else None)
    return {
        "op": op,
        "algorithm": algorithm,
        "ranks": ranks,
        "bytes": size,
        "count": count,
        "type": dtype,
        "redop": spec.redop,
        "root": (root if root is not None else 0) if spec.rooted else -1,
        "time_us": time_us,
        "algbw_gbps": algbw,
        "busbw_gbps": busbw,
        "wrong": wrong,
        "correct": None if wrong is None else wrong == 0,
        "model_time_us": model_time_us,
        "meas_over_model": ratio,
    }


def format_time_us(time_us: Optional[float]) -> str:
    """nccl-tests' time column: %7.2f below 100 us, %7.1f below 10 ms, %7.0f above."""
    if time_us is None:
        return f"{'N/A':>7}"
    if time_us >= 10000.0:
        return f"{time_us:7.0f}"
    if time_us >= 100.0:
        return f"{time_us:7.1f}"
    return f"{time_us:7.2f}"


def _num(value: Optional[float], width: int = 6) -> str:
    return f"{'N/A':>{width}}" if value is None else f"{value:{width}.2f}"


def format_header() -> str:
    """The two header lines (column names and units)."""
    names = (f"#{'size':>11}  {'count':>12}  {'type':>8}  {'redop':>6}  {'root':>6}  "
             f"{'time':>7}  {'algbw':>6}  {'busbw':>6} {'#wrong':>6}  {'model':>7}  {'meas/':>6}")
    units = (f"#{'(B)':>11}  {'(elements)':>12}  {'':>8}  {'':>6}  {'':>6}  "
             f"{'(us)':>7}  {'(GB/s)':>6}  {'(GB/s)':>6} {'':>6}  {'(us)':>7}  {'model':>6}")
    return names + "\n" + units


def format_row(row: Dict[str, Any]) -> str:
    """One row of the table from :func:`row_dict`."""
    wrong = row.get("wrong")
    wrong_text = f"{'N/A':>5}" if wrong is None else f"{wrong:5d}"
    return (f"{row['bytes']:12d}  {row['count']:12d}  {row['type']:>8}  {row['redop']:>6}  "
            f"{row['root']:6d}  {format_time_us(row.get('time_us'))}  "
            f"{_num(row.get('algbw_gbps'))}  {_num(row.get('busbw_gbps'))}  {wrong_text}  "
            f"{format_time_us(row.get('model_time_us'))}  {_num(row.get('meas_over_model'))}")


#: share of one CPU the engine process used while timing a size, from which
#: the table warns that the emulator itself, not the links, set the time
ENGINE_BUSY_SHARE = 0.9


def format_footer(rows: Sequence[Dict[str, Any]]) -> str:
    """nccl-tests' footer: total wrong elements and the average bus bandwidth."""
    wrong = sum(r.get("wrong") or 0 for r in rows)
    busbws = [r["busbw_gbps"] for r in rows if r.get("busbw_gbps") is not None]
    avg = sum(busbws) / len(busbws) if busbws else 0.0
    lines = [f"# Out of bounds values : {wrong} {'OK' if wrong == 0 else 'FAILED'}",
             f"# Avg bus bandwidth    : {avg:g}"]
    busy = [r for r in rows if (r.get("engine_cpu_share") or 0) >= ENGINE_BUSY_SHARE]
    if busy:
        sizes = ", ".join(f"{r['bytes']} B ({r['engine_cpu_share']:.2f})" for r in busy)
        lines.append(f"# Engine CPU-bound at  : {sizes}: these times may include the emulator's own "
                     f"per-message cost; fewer network ranks per machine (--gpus-per-host) take it out")
    for r in rows:
        if r.get("verdict"):
            lines.append(f"# Verdict {r['bytes']:>12} B: {r['verdict']:<4} {r.get('verdict_reason', '')}")
    return "\n".join(lines)


def format_table(rows: Iterable[Dict[str, Any]], title: str = "") -> str:
    """Header, rows and footer; ``title`` (e.g. "allreduce ring, 8 ranks") first if given."""
    rows = list(rows)
    lines = [f"# {title}"] if title else []
    lines.append(format_header())
    lines.extend(format_row(r) for r in rows)
    lines.append(format_footer(rows))
    return "\n".join(lines)


def parse_size(text: Any, field: str = "size") -> int:
    """A size in bytes as nccl-tests reads ``-b``/``-e``: ``4M`` = 4 MiB."""
    return parse_size_bytes(text, field)


def size_sweep(min_bytes: int, max_bytes: int, factor: Optional[int] = None,
               step_bytes: Optional[int] = None) -> List[int]:
    """nccl-tests' sizes: from ``min_bytes`` to ``max_bytes`` inclusive.

    Multiplied by ``factor`` (``-f``) when it is above 1, else increased by
    ``step_bytes`` (``-i``, default 1 MiB). At most :data:`MAX_SWEEP_SIZES`.
    """
    if min_bytes < 0 or max_bytes < min_bytes:
        raise InputError("-e", f"need 0 <= min ({min_bytes}) <= max ({max_bytes})")
    grow = factor if factor is not None else 1
    if isinstance(grow, bool) or not isinstance(grow, int) or grow < 1:
        raise InputError("-f", f"step factor must be an integer >= 1, got {factor!r}")
    step = DEFAULT_STEP_BYTES if step_bytes is None else step_bytes
    if grow == 1 and step <= 0:
        raise InputError("-i", f"step must be > 0 bytes, got {step_bytes!r}")
    if grow > 1 and min_bytes == 0:
        raise InputError("-b", "a size of 0 cannot grow by a factor; start at 1 byte or more")
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        sizes.append(size)
        if len(sizes) > MAX_SWEEP_SIZES:
            raise InputError("-i", f"more than {MAX_SWEEP_SIZES} sizes; use a larger step or -f")
        size = size * grow if grow > 1 else size + step
    return sizes
