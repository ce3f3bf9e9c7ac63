"""Field types shared by scenario and step option models (pydantic).

Each type checks a value the way the kernel or a tool will need it: names that
may reach the kernel (``Name``, ``SysctlKey``), tc-like units checked with
:mod:`testbed.units` (``RateText``, ``SizeText``), and ``Plain`` values that
JSON can carry. :class:`StrictModel` is the base of every model: unknown keys
are refused, types are not coerced, and instances are frozen.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Dict, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr

from testbed.errors import InputError
from testbed.units import parse_rate_bps, parse_size_bytes

__all__ = [
    "StrictModel", "Name", "CCName", "ParamKey", "Plain", "SysctlKey", "SysctlValue",
    "RateText", "SizeText", "DottedKey", "TopologyName", "flatten_sysctls", "check_sysctls",
]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}\Z")
_TOPOLOGY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
# an out-of-tree topology: path/to/mytopo.py or path/to/mytopo.py:name (as mn --custom)
_TOPOLOGY_FILE_RE = re.compile(r"^[A-Za-z0-9_./+-]{1,4000}\.py(:[A-Za-z0-9_-]{1,64})?\Z")
_PARAM_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}\Z")
_SYSCTL_KEY_RE = re.compile(r"^net(\.[a-z0-9_]+)(\.[a-z0-9_-]+)+\Z")
_SYSCTL_VALUE_RE = re.compile(r"^[A-Za-z0-9_ .:,-]{1,256}\Z")
_CC_RE = re.compile(r"^[a-z0-9_]{1,16}\Z")




def _check_cc(value: str) -> str:
    if not _CC_RE.match(value):
        raise ValueError(f"invalid congestion control name {value!r}")
    return value


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use 1-32 of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return value


def _check_topology(value: str) -> str:
    if not _TOPOLOGY_RE.match(value) and not _TOPOLOGY_FILE_RE.match(value):
        raise ValueError(f"invalid topology name {value!r}: use a-z, 0-9, '-' and '_', "
                         "or a topology file path/to/mytopo.py[:name]")
    return value


def _check_param_key(value: str) -> str:
    if not _PARAM_RE.match(value):
        raise ValueError(f"invalid parameter name {value!r}: use a-z, 0-9 and '_' (a Python identifier)")
    return value


def _check_plain(value: Any) -> Any:
    """Only what JSON can carry: a YAML date or a non-finite float is refused."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return value
    if isinstance(value, list):
        return [_check_plain(item) for item in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"mapping key {key!r} must be a string")
        return {key: _check_plain(item) for key, item in value.items()}
    raise ValueError(f"unsupported value {value!r} ({type(value).__name__}): quote it as a string")


def _check_sysctl_key(value: str) -> str:
    if not _SYSCTL_KEY_RE.match(value):
        raise ValueError(
            f"invalid sysctl {value!r}: only per-namespace 'net.*' keys such as net.ipv4.tcp_rmem"
        )
    return value


def _str_or_int(value: Any, what: str) -> Union[str, int]:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be a string or an integer, got {value!r}")
    return value


def _sysctl_value(value: Any) -> str:
    text = str(_str_or_int(value, "sysctl value"))
    if not _SYSCTL_VALUE_RE.match(text):
        raise ValueError(f"invalid sysctl value {text!r}: use letters, digits, spaces and . : , - _")
    return text


def _check_dotted_key(value: str) -> str:
    if not value or any(part.strip() == "" for part in value.split(".")):
        raise ValueError(f"invalid dotted key {value!r}")
    return value


def _unit_checker(parse, what: str, allow_none: bool = True):
    """An after-validator that checks a tc-like value with a testbed.units parser."""

    def check(value: Any) -> Any:
        if value is None:
            if not allow_none:
                raise ValueError(f"{what} is required (for example 100Mbit), not null")
            return value
        _str_or_int(value, what)
        try:
            parse(value, what)
        except InputError as exc:
            raise ValueError(exc.message) from exc
        return value

    return check


Name = Annotated[StrictStr, AfterValidator(_check_name)]
CCName = Annotated[StrictStr, AfterValidator(_check_cc)]
ParamKey = Annotated[StrictStr, AfterValidator(_check_param_key)]
Plain = Annotated[Any, AfterValidator(_check_plain)]
SysctlKey = Annotated[StrictStr, AfterValidator(_check_sysctl_key)]
SysctlValue = Annotated[Any, AfterValidator(_sysctl_value)]
RateText = Annotated[Any, AfterValidator(_unit_checker(parse_rate_bps, "bitrate", allow_none=False))]
SizeText = Annotated[Any, AfterValidator(_unit_checker(parse_size_bytes, "window"))]
DottedKey = Annotated[StrictStr, AfterValidator(_check_dotted_key)]


class StrictModel(BaseModel):
    """Unknown keys refused, no type coercion, frozen: every scenario and option model."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)



TopologyName = Annotated[StrictStr, AfterValidator(_check_topology)]


def flatten_sysctls(value: Any) -> Any:
    """Accept nested YAML (``net: {ipv4: {tcp_ecn: 1}}``) as dotted keys."""
    if not isinstance(value, dict):
        return value
    flat: Dict[Any, Any] = {}

    def walk(prefix: str, node: dict) -> None:
        for key, item in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(item, dict) and isinstance(name, str):
                walk(name, item)
            elif name in flat:
                raise ValueError(f"sysctl {name!r} is given twice")
            else:
                flat[name] = item

    walk("", value)
    return flat


def check_sysctls(value: Any, field: str, source: Optional[str] = None) -> Dict[str, str]:
    """Host sysctls as a scenario's ``host_sysctls`` takes them (nested or dotted keys).

    InputError naming ``field.<key>`` for a key or value the kernel must not get.
    """
    try:
        flat = flatten_sysctls(value)
    except ValueError as exc:
        raise InputError(field, str(exc), source=source) from exc
    if not isinstance(flat, dict):
        raise InputError(field, "give sysctls as KEY=VALUE, e.g. net.ipv4.tcp_rmem='4096 131072 16777216'",
                         source=source)
    out = {}
    for key, item in flat.items():
        try:
            out[_check_sysctl_key(key)] = _sysctl_value(item)
        except ValueError as exc:
            raise InputError(f"{field}.{key}", str(exc), source=source) from exc
    return out
