"""Convert tc-like user values into canonical units, once, at the edge.

Every quantity inside the testbed carries its unit in its name (``rate_bps``,
``delay_ms``, ``loss_pct``, ``size_bytes``). User input -- scenario files,
``--set key=value`` options, library calls -- arrives as tc-like strings or bare
numbers and is converted here, and nowhere else. Each parser takes the value
and the dotted name of the field it came from, and raises
:class:`~testbed.errors.InputError` naming that field and quoting the bad value.

Units accepted (all case-insensitive, optional space between number and unit;
numbers may be written ``1.5``, ``.5`` or ``1e3``):

* **rates** (:func:`parse_rate_bps`, bits per second), as in tc(8):
  ``bit``, ``kbit``, ``mbit``, ``gbit``, ``tbit`` (powers of 1000);
  ``kibit``, ``mibit``, ``gibit``, ``tibit`` (powers of 1024);
  ``bps``, ``kbps``, ``mbps``, ``gbps``, ``tbps`` are **bytes** per second
  (times 8), with ``kibps`` ... ``tibps`` the binary byte forms. Beware, as in
  tc: ``100Mbps`` means 100 megabytes/s = 800 Mbit/s; write ``100Mbit`` for
  megabits. A bare number is bit/s.
* **times** (:func:`parse_time_ms`, milliseconds): ``s``/``sec``/``secs``,
  ``ms``/``msec``/``msecs``, ``us``/``usec``/``usecs``, ``ns``/``nsec``/``nsecs``.
  A bare number is **milliseconds** (tc would read it as microseconds).
* **percentages** (:func:`parse_pct`): ``0.1%`` or a bare ``0.1``; 0..100.
* **sizes** (:func:`parse_size_bytes`, bytes): a bare number or ``B`` is bytes;
  ``K``, ``M``, ``G``, ``T`` alone are powers of 1024 (as nccl-tests' ``-b``/``-e``
  read ``4M``); ``KiB``, ``MiB``, ``GiB``, ``TiB`` are powers of 1024 too;
  ``KB``, ``MB``, ``GB``, ``TB`` are SI powers of 1000 (unlike tc, whose ``kb``
  is 1024 bytes).

Numbers are parsed as exact decimals, so ``"1.1Gbit"`` is exactly
1,100,000,000 bit/s. The formatters (:func:`format_rate`, :func:`format_time`,
:func:`format_pct`, :func:`format_size_bytes`) turn canonical values back into
tc-like strings that parse back to the same value exactly.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Tuple

from testbed.errors import InputError

__all__ = [
    "parse_rate_bps",
    "parse_time_ms",
    "parse_pct",
    "parse_size_bytes",
    "format_rate",
    "format_time",
    "format_pct",
    "format_size_bytes",
    "format_number",
    "NUMBER_PATTERN",
    "MAX_RATE_BPS",
]

#: Largest accepted rate: 1000 Tbit/s, far beyond anything emulated; it only
#: stops absurd inputs such as ``1e999Gbit`` from becoming giant integers.
MAX_RATE_BPS = 10**15

#: Regular expression of a number as users may write it: ``15``, ``1.5``, ``.5``, ``1e3``.
NUMBER_PATTERN = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE_RE = re.compile(rf"^\s*({NUMBER_PATTERN})\s*([A-Za-z%]*)\s*$")

_K, _M, _G, _T = 10**3, 10**6, 10**9, 10**12
_KI, _MI, _GI, _TI = 2**10, 2**20, 2**30, 2**40

# unit (lower case) -> bits per second
_RATE_UNITS: Dict[str, int] = {
    "": 1,
    "bit": 1,
    "kbit": _K,
    "mbit": _M,
    "gbit": _G,
    "tbit": _T,
    "kibit": _KI,
    "mibit": _MI,
    "gibit": _GI,
    "tibit": _TI,
    "bps": 8,
    "kbps": 8 * _K,
    "mbps": 8 * _M,
    "gbps": 8 * _G,
    "tbps": 8 * _T,
    "kibps": 8 * _KI,
    "mibps": 8 * _MI,
    "gibps": 8 * _GI,
    "tibps": 8 * _TI,
}
_RATE_HELP = "e.g. '10Gbit', '250Mbit', '100kbit' (bit units; 'bps' units are bytes/s)"

# unit (lower case) -> milliseconds
_TIME_UNITS: Dict[str, Decimal] = {
    "": Decimal(1),
    "ms": Decimal(1),
    "msec": Decimal(1),
    "msecs": Decimal(1),
    "s": Decimal(1000),
    "sec": Decimal(1000),
    "secs": Decimal(1000),
    "us": Decimal("0.001"),
    "usec": Decimal("0.001"),
    "usecs": Decimal("0.001"),
    "ns": Decimal("0.000001"),
    "nsec": Decimal("0.000001"),
    "nsecs": Decimal("0.000001"),
}
_TIME_HELP = "e.g. '15ms', '250us', '1.5s' (a bare number is ms)"

# unit (lower case) -> bytes
_SIZE_UNITS: Dict[str, int] = {
    "": 1,
    "b": 1,
    "k": _KI,
    "m": _MI,
    "g": _GI,
    "t": _TI,
    "kib": _KI,
    "mib": _MI,
    "gib": _GI,
    "tib": _TI,
    "kb": _K,
    "mb": _M,
    "gb": _G,
    "tb": _T,
}
_SIZE_HELP = "e.g. '1500', '64KiB', '1MB', '4M' (K/M/G alone are powers of 1024)"


def _split(value: Any, field: str, what: str, help_text: str) -> Tuple[Decimal, str]:
    """Split a user value into an exact decimal number and a lower-case unit."""
    if isinstance(value, bool):
        raise InputError(field, f"invalid {what} {value!r}: expected a number, {help_text}")
    if isinstance(value, int):
        return Decimal(value), ""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(field, f"invalid {what} {value!r}: must be a finite number")
        return Decimal(repr(value)), ""
    if not isinstance(value, str):
        raise InputError(
            field,
            f"invalid {what} {value!r}: expected a number or a string, {help_text}",
        )
    match = _VALUE_RE.match(value)
    problem = f"invalid {what} {value!r}: expected a number with a unit, {help_text}"
    if match is None:
        raise InputError(field, problem)
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:  # the regex should make this unreachable
        raise InputError(field, problem) from exc
    if number != 0 and number.adjusted() > 40:
        raise InputError(field, f"invalid {what} {value!r}: number out of range")
    return number, match.group(2).lower()


def _unit_error(field: str, what: str, value: Any, unit: str, units: Dict[str, Any]) -> InputError:
    known = ", ".join(u for u in units if u)
    return InputError(field, f"invalid {what} {value!r}: unknown unit {unit!r} (known: {known})")


def parse_rate_bps(value: Any, field: str) -> int:
    """A tc-like rate (``"10Gbit"``, ``"1.5Gbit"``, ``"125MBps"``, ``1e9``) in bit/s.

    Rounded to the nearest whole bit/s; must be greater than zero.
    """
    number, unit = _split(value, field, "rate", _RATE_HELP)
    scale = _RATE_UNITS.get(unit)
    if scale is None:
        raise _unit_error(field, "rate", value, unit, _RATE_UNITS)
    rate = number * scale
    if rate > MAX_RATE_BPS:
        raise InputError(field, f"invalid rate {value!r}: must be at most 1000Tbit")
    rate_bps = int(rate.to_integral_value())
    if rate_bps <= 0:
        raise InputError(field, f"invalid rate {value!r}: must be greater than 0 bit/s")
    return rate_bps


def parse_time_ms(value: Any, field: str) -> float:
    """A tc-like time (``"15ms"``, ``"250us"``, ``"1.5s"``, ``0``) in milliseconds.

    A bare number is milliseconds. Must not be negative.
    """
    number, unit = _split(value, field, "time", _TIME_HELP)
    scale = _TIME_UNITS.get(unit)
    if scale is None:
        raise _unit_error(field, "time", value, unit, _TIME_UNITS)
    if number < 0:
        raise InputError(field, f"invalid time {value!r}: must not be negative")
    time_ms = float(number * scale)
    if not math.isfinite(time_ms):
        raise InputError(field, f"invalid time {value!r}: number out of range")
    return time_ms + 0.0  # turns a -0.0 from "-0" into 0.0


def parse_pct(value: Any, field: str) -> float:
    """A percentage (``"0.1%"`` or a bare ``0.1``), from 0 to 100 inclusive."""
    number, unit = _split(
        value, field, "percentage", "e.g. '0.1%' (a bare number is percent)"
    )
    if unit not in ("", "%"):
        raise InputError(
            field, f"invalid percentage {value!r}: unknown unit {unit!r} (use '%')"
        )
    if number < 0 or number > 100:
        raise InputError(field, f"invalid percentage {value!r}: must be between 0% and 100%")
    return float(number) + 0.0


def parse_size_bytes(value: Any, field: str) -> int:
    """A size (``"1500"``, ``"64KiB"``, ``"1MB"``, ``"4M"``) in whole bytes, >= 0.

    ``K``/``M``/``G``/``T`` alone and ``KiB``/``MiB``/... are powers of 1024;
    ``KB``/``MB``/... are powers of 1000.
    """
    number, unit = _split(value, field, "size", _SIZE_HELP)
    scale = _SIZE_UNITS.get(unit)
    if scale is None:
        raise _unit_error(field, "size", value, unit, _SIZE_UNITS)
    size = number * scale
    if size < 0:
        raise InputError(field, f"invalid size {value!r}: must not be negative")
    if size != size.to_integral_value():
        raise InputError(field, f"invalid size {value!r}: must be a whole number of bytes")
    return int(size)


# ---------------------------------------------------------------- formatting


def _plain(number: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``1.50E+3`` -> ``1500``."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_number(value: float) -> str:
    """The shortest plain decimal (no exponent) that reads back as exactly ``value``."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"number must be finite, got {value!r}")
    return _plain(Decimal(repr(value)))


def format_rate(rate_bps: int) -> str:
    """``10_000_000_000`` -> ``"10Gbit"``; ``1_500_000_000`` -> ``"1.5Gbit"``.

    Uses the largest SI bit unit that keeps the number exact with at most three
    decimals, so :func:`parse_rate_bps` gives the same integer back.
    """
    rate = int(rate_bps)
    if rate <= 0:
        raise ValueError(f"rate must be > 0 bit/s, got {rate_bps!r}")
    for unit, scale in (("Tbit", _T), ("Gbit", _G), ("Mbit", _M), ("kbit", _K)):
        if rate >= scale and (rate * 1000) % scale == 0:
            return _plain(Decimal(rate) / Decimal(scale)) + unit
    return f"{rate}bit"


def _time_round_trips(text: str, unit: str, time_ms: float) -> bool:
    return float(Decimal(text) * _TIME_UNITS[unit]) == time_ms


def format_time(time_ms: float) -> str:
    """``15.0`` -> ``"15ms"``, ``0.25`` -> ``"250us"``, ``1500.0`` -> ``"1.5s"``.

    The result parses back (with :func:`parse_time_ms`) to exactly ``time_ms``.
    """
    time_ms = float(time_ms)
    if not math.isfinite(time_ms) or time_ms < 0:
        raise ValueError(f"time must be a finite number >= 0 ms, got {time_ms!r}")
    if time_ms == 0:
        return "0ms"
    if time_ms >= 1000:
        text = format_number(time_ms / 1000)
        if _time_round_trips(text, "s", time_ms):
            return text + "s"
    if time_ms < 1:
        text = format_number(time_ms * 1000)
        if _time_round_trips(text, "us", time_ms):
            return text + "us"
    return format_number(time_ms) + "ms"


def format_pct(pct: float) -> str:
    """``0.1`` -> ``"0.1%"``; parses back to exactly the same float."""
    pct = float(pct)
    if not math.isfinite(pct):
        raise ValueError(f"percentage must be finite, got {pct!r}")
    return format_number(pct) + "%"


def format_size_bytes(size_bytes: int) -> str:
    """``65536`` -> ``"64KiB"``, ``1_000_000`` -> ``"1MB"``, ``1500`` -> ``"1500B"``.

    Binary units when exact, else SI units when exact, else plain bytes.
    """
    size = int(size_bytes)
    if size < 0:
        raise ValueError(f"size must be >= 0 bytes, got {size_bytes!r}")
    if size == 0:
        return "0B"
    for unit, scale in (("TiB", _TI), ("GiB", _GI), ("MiB", _MI), ("KiB", _KI)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    for unit, scale in (("TB", _T), ("GB", _G), ("MB", _M), ("KB", _K)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"
