"""Options of the ``storage`` step: a strict pydantic model, like the other step options.

Sizes take a number of bytes or a size string (``"256K"``, ``"64MiB"``,
``"1MB"``; see :func:`testbed.units.parse_size_bytes`) and are held as
whole bytes; ``corrupt_pct`` takes ``0.5`` or ``"0.5%"``. Unknown keys are
refused. What needs the lab (do the named sites and hosts exist?) is
checked by :mod:`testbed.storage.roles` when the step runs.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, List, Mapping, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)

from testbed.errors import InputError
from testbed.units import parse_pct, parse_size_bytes

__all__ = ["StorageOptions", "MAX_DATASET_BYTES", "load_options"]

#: The origin holds every version it publishes in memory: keep the dataset modest.
MAX_DATASET_BYTES = 2 * 1024**3

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}\Z")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use 1-32 of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return value


def _to_bytes(value: Any) -> Any:
    """``"64M"`` -> 67108864; a bool or anything unparsable is left for pydantic to refuse."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return value
    try:
        return parse_size_bytes(value, "size")
    except InputError as exc:
        raise ValueError(exc.message) from exc


def _to_pct(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        return parse_pct(value, "corrupt_pct")
    except InputError as exc:
        raise ValueError(exc.message) from exc


Name = Annotated[StrictStr, AfterValidator(_check_name)]
SizeBytes = Annotated[int, BeforeValidator(_to_bytes)]
Pct = Annotated[float, BeforeValidator(_to_pct)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StorageOptions(_Strict):
    """Central object storage read from other sites, with an optional regional cache."""

    origin_site: Optional[Name] = None  # the origin is this site's first host
    origin_host: Optional[Name] = None  # or this host (not both)
    reader_site: Optional[Name] = None  # readers: every host of this site but the origin
    readers: Optional[List[Name]] = Field(None, min_length=1, max_length=64)  # or these hosts
    cache: bool = True
    cache_host: Optional[Name] = None  # default: a spare host of the readers' site, else a reader
    cache_capacity_bytes: SizeBytes = Field(64 * 1024**2, ge=0, le=MAX_DATASET_BYTES)
    shards: int = Field(32, ge=1, le=100_000)
    shard_size_bytes: SizeBytes = Field(256 * 1024, ge=1, le=256 * 1024**2)
    epochs: int = Field(2, ge=1, le=100)
    parallel: int = Field(4, ge=1, le=64)  # concurrent requests per reader
    max_retries: int = Field(3, ge=0, le=100)  # per object read, after the first attempt
    corrupt_pct: Pct = Field(0.0, ge=0.0, le=100.0)  # origin's emulated silent corruption
    updates_per_epoch: int = Field(0, ge=0, le=100_000)  # shards republished before epochs 2..
    request_timeout_s: float = Field(10.0, gt=0, le=600.0)
    timeout_s: float = Field(120.0, gt=0, le=3600.0)  # per epoch, all readers
    seed: int = Field(0, ge=0, le=2**32 - 1)
    origin_port: int = Field(8470, ge=1024, le=65535)
    cache_port: int = Field(8471, ge=1024, le=65535)

    @model_validator(mode="after")
    def _consistent(self) -> "StorageOptions":
        if self.origin_site is not None and self.origin_host is not None:
            raise ValueError("give origin_site or origin_host, not both")
        if self.reader_site is not None and self.readers is not None:
            raise ValueError("give reader_site or readers, not both")
        if self.readers is not None and len(set(self.readers)) != len(self.readers):
            raise ValueError("readers must not name a host twice")
        if self.cache_host is not None and not self.cache:
            raise ValueError("cache_host is given but cache is false")
        if self.shards * self.shard_size_bytes > MAX_DATASET_BYTES:
            raise ValueError(f"shards x shard_size_bytes must be at most {MAX_DATASET_BYTES} bytes "
                             "(the origin keeps the dataset in memory)")
        if self.updates_per_epoch > self.shards:
            raise ValueError("updates_per_epoch must not exceed shards")
        if self.origin_port == self.cache_port:
            raise ValueError("origin_port and cache_port must differ")
        return self

    @property
    def dataset_bytes(self) -> int:
        return self.shards * self.shard_size_bytes


def _message(error: dict) -> str:
    if error.get("type") == "extra_forbidden":
        bad = str(error["loc"][-1])
        known = list(StorageOptions.model_fields)
        close = difflib.get_close_matches(bad, known, n=1)
        return f"unknown key {bad!r} (known: {', '.join(known)})" + (
            f"; did you mean {close[0]!r}?" if close else "")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)) or value is None:
        message += f" (got {repr(value)[:60]})"
    return message


def load_options(data: Optional[Mapping[str, Any]], field: str = "measure.storage") -> StorageOptions:
    """Validate a mapping (``None`` means all defaults); InputError naming the first bad field.

    For library users who build options from plain data; a scenario file's
    ``measure.storage`` section is validated with the rest of the scenario.
    """
    if data is not None and not isinstance(data, Mapping):
        raise InputError(field, f"must be a mapping of options, got {type(data).__name__}")
    try:
        return StorageOptions.model_validate(dict(data or {}))
    except ValidationError as exc:
        errors = exc.errors()
        loc = ".".join(str(part) for part in errors[0].get("loc", ()))
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(f"{field}.{loc}" if loc else field, _message(errors[0]) + extra) from exc
