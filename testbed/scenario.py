"""Scenario files: the declarative experiments that ``testbed run`` executes.

A scenario names a topology, the link profiles it uses, the host sysctls, the
variants to compare (for example a direct interconnect and internet transit)
and the ordered measurement steps. It is YAML, read with a ``yaml.SafeLoader``
that also rejects duplicate keys, and validated by the pydantic models below:
every mapping forbids unknown keys, and every error becomes an
:class:`~testbed.errors.InputError` with the dotted field
(``variants.1.params.path``, ``measure.tcp.duration_s``) and a one-line message.

Nothing in a scenario names a file or directory: a scenario cannot make a run
write outside its output directory. Names that may reach the kernel (variant,
link and node names, sysctl keys) are checked against strict patterns.

Overrides: ``load_scenario(path, overrides=["measure.tcp.duration_s=3"])``
applies ``--set`` items (see :mod:`testbed.overrides`) to the raw document
before validation; ``quick=True`` first applies the scenario's own ``quick:``
section (so ``--set`` still wins). The ``quick:`` section is validated on every
load, so a typo in it fails early even when ``--quick`` is not given.

Merging: :meth:`Scenario.variant_config` merges the shared ``params`` and
``links`` with a variant's own, key by key; the variant's entry replaces the
shared one whole (no deep merge).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Collection, Dict, Iterable, List, Optional, Sequence, Tuple, Type, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from testbed.errors import InputError
from testbed.overrides import apply_overrides, set_dotted
from testbed.presets import load_presets
from testbed.profile import resolve_link
from testbed.scale import MAX_SCALE
from testbed.storage.options import StorageOptions
from testbed.units import parse_rate_bps, parse_size_bytes
from testbed.yamltext import load_yaml

__all__ = [
    "Scenario",
    "Variant",
    "Endpoints",
    "Measure",
    "PingOptions",
    "OwdOptions",
    "TcpOptions",
    "UdpOptions",
    "PathOptions",
    "SteadyOptions",
    "FidelityOptions",
    "STEP_OPTIONS",
    "load_scenario",
    "parse_scenario",
    "list_scenarios",
    "read_yaml",
]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_TOPOLOGY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PARAM_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_SYSCTL_KEY_RE = re.compile(r"^net(\.[a-z0-9_]+)(\.[a-z0-9_-]+)+$")
_SYSCTL_VALUE_RE = re.compile(r"^[A-Za-z0-9_ .:,-]{1,256}$")
_CC_RE = re.compile(r"^[a-z0-9_]{1,16}$")


# ------------------------------------------------------------- field checks


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
    if not _TOPOLOGY_RE.match(value):
        raise ValueError(f"invalid topology name {value!r}: use a-z, 0-9, '-' and '_'")
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------- measurement steps


class PingOptions(_Strict):
    """ICMP echo RTT and loss (iputils ping)."""

    count: int = Field(100, ge=1, le=100_000)
    interval_s: float = Field(0.2, ge=0.002, le=60.0)
    size_bytes: int = Field(56, ge=0, le=65_507)


class OwdOptions(_Strict):
    """Timestamped UDP probes: one-way delay per direction, RFC 3550 jitter."""

    count: int = Field(500, ge=1, le=1_000_000)
    interval_ms: float = Field(10.0, ge=0.1, le=60_000.0)
    size_bytes: int = Field(64, ge=32, le=65_507)


class TcpOptions(_Strict):
    """iperf3 TCP throughput, retransmits and per-interval rate."""

    duration_s: float = Field(10.0, gt=0, le=3600.0)
    streams: int = Field(1, ge=1, le=128)
    cc: Optional[CCName] = None  # congestion control (e.g. cubic, bbr); host default if None
    window: Optional[SizeText] = None  # socket buffer, e.g. "4MiB"; host default if None

    @property
    def window_bytes(self) -> Optional[int]:
        return None if self.window is None else parse_size_bytes(self.window, "measure.tcp.window")


class UdpOptions(_Strict):
    """iperf3 UDP at a fixed offered rate: throughput, jitter, loss."""

    duration_s: float = Field(5.0, gt=0, le=3600.0)
    bitrate: RateText = "100Mbit"
    size_bytes: Optional[int] = Field(None, ge=16, le=65_507)  # datagram payload; iperf3 default if None

    @property
    def bitrate_bps(self) -> int:
        return parse_rate_bps(self.bitrate, "measure.udp.bitrate")


class PathOptions(_Strict):
    """Hop count (TTL-limited probes) and path MTU."""

    max_hops: int = Field(30, ge=1, le=64)


class SteadyOptions(_Strict):
    """Time to steady throughput: first interval after which the rate stays within tolerance."""

    tolerance_pct: float = Field(10.0, gt=0, le=100.0)


class CollectiveOptions(_Strict):
    """Collective timing between the lab's hosts, nccl-tests style (testbed collective)."""

    op: Literal["allreduce", "reduce_scatter", "allgather", "broadcast", "reduce", "alltoall",
                "sendrecv"] = "allreduce"
    algorithm: Literal["ring", "tree", "rabenseifner", "hierarchical"] = "ring"
    sizes: List[SizeText] = Field(default_factory=lambda: ["64KiB", "1MiB", "4MiB"], min_length=1,
                                  max_length=64)
    iters: int = Field(5, ge=1, le=1000)
    warmup: int = Field(1, ge=0, le=100)
    gpus_per_host: int = Field(1, ge=1, le=64)
    nsocks: int = Field(1, ge=1, le=64)
    buffsize: SizeText = "4MiB"
    order: Literal["topology", "naive"] = "topology"
    protocol: Literal["eager", "rendezvous"] = "eager"
    window: int = Field(2, ge=1, le=64)
    cc: Optional[CCName] = None  # the engine's connections' congestion control; host default if None

    def sizes_bytes(self) -> List[int]:
        return [parse_size_bytes(s, f"measure.collective.sizes.{i}") for i, s in enumerate(self.sizes)]

    @property
    def buffsize_bytes(self) -> int:
        return parse_size_bytes(self.buffsize, "measure.collective.buffsize")


class TimelineOptions(_Strict):
    """Throughput and RTT over time while scheduled events change the lab (testbed/measure/timeline.py)."""

    duration_s: float = Field(8.0, gt=0, le=600.0, allow_inf_nan=False)
    interval_s: float = Field(0.1, ge=0.05, le=10.0, allow_inf_nan=False)
    ping_interval_s: float = Field(0.05, ge=0.01, le=10.0, allow_inf_nan=False)
    cc: Optional[CCName] = None  # the flow's congestion control; host default if None
    recover_fraction: float = Field(0.8, gt=0, le=1.0, allow_inf_nan=False)
    hold_s: float = Field(1.0, gt=0, le=60.0, allow_inf_nan=False)
    baseline_s: float = Field(2.0, gt=0, le=60.0, allow_inf_nan=False)
    port: int = Field(5301, ge=1024, le=65535)
    events: List[Plain] = Field(default_factory=list, max_length=100)

    def parsed_events(self, field: str = "measure.timeline.events"):
        """The events as testbed.events.Event objects (InputError naming the field)."""
        from testbed.events import parse_events

        return parse_events(self.events, field)




class TrainingOptions(_Strict):
    """Data-parallel training steps across the lab's sites (testbed/collectives/training.py)."""

    model_size: SizeText = "64MB"
    steps: int = Field(5, ge=1, le=1000)
    warmup_steps: int = Field(1, ge=0, le=100)
    gpus_per_host: int = Field(1, ge=1, le=16)
    compute_ms: Dict[Literal["H100", "A100", "L40S", "V100", "T4"],
                     Annotated[float, Field(gt=0, le=600_000, allow_inf_nan=False)]] = Field(default_factory=dict)
    noise_pct: float = Field(5.0, ge=0, le=100, allow_inf_nan=False)
    algorithm: Literal["ring", "hierarchical"] = "ring"
    buckets: int = Field(1, ge=1, le=64)
    backward_share: float = Field(0.67, gt=0, le=1, allow_inf_nan=False)
    placements: List[Literal["naive", "topology"]] = Field(default_factory=lambda: ["naive", "topology"],
                                                           min_length=1, max_length=2)
    seed: int = Field(0, ge=0, le=2**31)

    @field_validator("placements")
    @classmethod
    def _unique(cls, value: List[str]) -> List[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"placements must not repeat: {value}")
        return value

    def engine_options(self) -> Dict[str, Any]:
        """The dict :func:`testbed.collectives.training.run_training` takes."""
        out = self.model_dump()
        out["model_size_bytes"] = parse_size_bytes(self.model_size, "measure.training.model_size")
        return out


#: step kind -> options model; the registry the runner dispatches on.
STEP_OPTIONS: Dict[str, Type[_Strict]] = {
    "ping": PingOptions,
    "owd": OwdOptions,
    "tcp": TcpOptions,
    "udp": UdpOptions,
    "path": PathOptions,
    "steady": SteadyOptions,
    "collective": CollectiveOptions,
    "training": TrainingOptions,
    "storage": StorageOptions,
    "timeline": TimelineOptions,
}


class Measure(_Strict):
    """The ordered measurement steps; a kind left out is not run."""

    ping: Optional[PingOptions] = None
    owd: Optional[OwdOptions] = None
    tcp: Optional[TcpOptions] = None
    udp: Optional[UdpOptions] = None
    path: Optional[PathOptions] = None
    steady: Optional[SteadyOptions] = None
    collective: Optional[CollectiveOptions] = None
    training: Optional[TrainingOptions] = None
    storage: Optional[StorageOptions] = None
    timeline: Optional[TimelineOptions] = None

    _order: Tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _empty_means_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # "path:" with nothing after it means "run with defaults", not "skip".
            return {kind: ({} if opts is None else opts) for kind, opts in data.items()}
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler):
        model = handler(data)
        if isinstance(data, dict):
            model._order = tuple(kind for kind in data if kind in STEP_OPTIONS)
        if not model._order:
            model._order = tuple(kind for kind in STEP_OPTIONS if getattr(model, kind) is not None)
        if not model._order:
            raise ValueError("at least one measurement step is needed: " + ", ".join(STEP_OPTIONS))
        return model

    def steps(self) -> List[Tuple[str, BaseModel]]:
        """``[(kind, options), ...]`` in the order the scenario lists them."""
        return [(kind, getattr(self, kind)) for kind in self._order]

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        return {kind: opts.model_dump(mode="json") for kind, opts in self.steps()}


# ------------------------------------------------------------ the scenario


class Endpoints(_Strict):
    """The two hosts the measurements run between (names from the topology)."""

    src: Name
    dst: Name


class FidelityOptions(_Strict):
    """How far a measurement may stray from what the links were configured to do."""

    rtt_tolerance_pct: float = Field(10.0, gt=0, le=1000.0)
    throughput_tolerance_pct: float = Field(15.0, gt=0, le=1000.0)
    jitter_tolerance_pct: float = Field(30.0, gt=0, le=1000.0)


def _flatten_sysctls(value: Any) -> Any:
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


class Variant(_Strict):
    """One arm of the comparison: its own topology parameters and link overrides."""

    name: Name
    description: StrictStr = ""
    params: Dict[ParamKey, Plain] = Field(default_factory=dict)
    links: Dict[Name, Plain] = Field(default_factory=dict)
    measure: Dict[StrictStr, Plain] = Field(default_factory=dict)


def _deep_merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Scenario(_Strict):
    """A validated scenario; build it with :func:`load_scenario`."""

    name: Name
    description: StrictStr = ""
    topology: Annotated[StrictStr, AfterValidator(_check_topology)]
    params: Dict[ParamKey, Plain] = Field(default_factory=dict)
    links: Dict[Name, Plain] = Field(default_factory=dict)
    host_sysctls: Annotated[Dict[SysctlKey, SysctlValue], BeforeValidator(_flatten_sysctls)] = Field(
        default_factory=dict
    )
    endpoints: Optional[Endpoints] = None
    variants: List[Variant] = Field(min_length=1, max_length=32)
    measure: Measure
    repeats: int = Field(1, ge=1, le=100)
    # "auto": testbed.autoscale picks K per variant; a number is used as given
    scale: Union[Literal["auto"], Annotated[float, Field(ge=1, le=MAX_SCALE, allow_inf_nan=False)]] = "auto"
    cost: Dict[StrictStr, Plain] = Field(default_factory=dict)
    quick: Dict[DottedKey, Plain] = Field(default_factory=dict)
    fidelity: FidelityOptions = Field(default_factory=FidelityOptions)

    _source: Optional[str] = PrivateAttr(default=None)
    _presets: Any = PrivateAttr(default=None)
    _cost: Any = PrivateAttr(default=None)  # (testbed.cost.CostConfig, daily bytes or None)
    _variant_measures: Dict[int, Any] = PrivateAttr(default_factory=dict)  # index -> merged Measure

    @property
    def source(self) -> Optional[str]:
        """The file this scenario came from (None if built from a dict)."""
        return self._source

    def variant(self, which: Union["Variant", str, int]) -> "Variant":
        """A variant by object, name or index."""
        if isinstance(which, Variant):
            return which
        if isinstance(which, int) and not isinstance(which, bool):
            if 0 <= which < len(self.variants):
                return self.variants[which]
        else:
            for variant in self.variants:
                if variant.name == which:
                    return variant
        known = ", ".join(v.name for v in self.variants)
        raise InputError("variant", f"no variant {which!r} (known: {known})", source=self._source)

    def variant_index(self, which: Union["Variant", str, int]) -> int:
        variant = self.variant(which)
        return next(i for i, v in enumerate(self.variants) if v.name == variant.name)

    def variant_config(self, which: Union["Variant", str, int]) -> Dict[str, Any]:
        """Shared settings merged with one variant's (the variant wins, key by key)."""
        variant = self.variant(which)
        return {
            "name": variant.name,
            "description": variant.description,
            "topology": self.topology,
            "params": {**self.params, **variant.params},
            "links": {**self.links, **variant.links},
            "host_sysctls": dict(self.host_sysctls),
            "endpoints": None if self.endpoints is None else self.endpoints.model_dump(),
        }

    def param_field(self, which: Union["Variant", str, int], key: str) -> str:
        """The dotted field a merged parameter came from, for error messages."""
        index = self.variant_index(which)
        if key in self.variants[index].params:
            return f"variants.{index}.params.{key}"
        return f"params.{key}"

    def link_field(self, which: Union["Variant", str, int], link: str) -> str:
        """The dotted field a merged link profile came from, for error messages."""
        index = self.variant_index(which)
        if link in self.variants[index].links:
            return f"variants.{index}.links.{link}"
        return f"links.{link}"

    def events_field(self, which: Union["Variant", str, int]) -> str:
        """The dotted field a variant's timeline events came from, for error messages."""
        index = self.variant_index(which)
        if "events" in (self.variants[index].measure.get("timeline") or {}):
            return f"variants.{index}.measure.timeline.events"
        return "measure.timeline.events"

    def variant_links(self, which: Union["Variant", str, int]) -> Dict[str, Any]:
        """The variant's merged links resolved to ``LinkSpec`` objects."""
        merged = self.variant_config(which)["links"]
        return {
            name: resolve_link(value, self.link_field(which, name), presets=self._presets, source=self._source)
            for name, value in merged.items()
        }

    def steps(self, which: Union["Variant", str, int, None] = None) -> List[Tuple[str, BaseModel]]:
        """The measurement steps; of one variant when ``which`` is given (its ``measure:`` merged in)."""
        return self.variant_measure(which).steps() if which is not None else self.measure.steps()

    def variant_measure(self, which: Union["Variant", str, int]) -> "Measure":
        """The scenario's ``measure`` with the variant's ``measure:`` deep-merged over it.

        Steps keep the scenario's order; a step only the variant names comes last.
        """
        index = self.variant_index(which)
        variant = self.variants[index]
        if not variant.measure:
            return self.measure
        if index not in self._variant_measures:  # validated once, at load
            self._variant_measures[index] = Measure.model_validate(
                _deep_merge(self.measure.to_dict(), variant.measure))
        return self._variant_measures[index]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready copy, recorded in results.json."""
        data = self.model_dump(mode="json")
        data["measure"] = self.measure.to_dict()
        return data


# ------------------------------------------------------------------ loading


def read_yaml(path: Union[str, Path]) -> Any:
    """Parse a YAML file safely; errors become InputError with line and column."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("scenario", "file not found", source=source) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("scenario", f"cannot read: {exc}", source=source) from exc
    return load_yaml(text, source=source)


def _dotted(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc if part != "[key]"]
    return ".".join(parts) or "<top>"


def _model_at(loc: Sequence[Any]) -> Optional[Type[BaseModel]]:
    """The model class that owns the key at ``loc`` (best effort, for hints)."""
    owners: Dict[Tuple[str, ...], Type[BaseModel]] = {
        (): Scenario,
        ("variants", "*"): Variant,
        ("endpoints",): Endpoints,
        ("measure",): Measure,
        ("fidelity",): FidelityOptions,
    }
    owners.update({("measure", kind): model for kind, model in STEP_OPTIONS.items()})
    key = tuple("*" if isinstance(part, int) else str(part) for part in loc)
    return owners.get(key)


def _message(error: Dict[str, Any]) -> str:
    loc = error.get("loc", ())
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1])
        bad = str(loc[-1]) if loc else "?"
        if owner is Measure:
            return f"unknown measurement step {bad!r} (known: {', '.join(STEP_OPTIONS)})"
        if owner is not None:
            known = list(owner.model_fields)
            close = difflib.get_close_matches(bad, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown key {bad!r} (known: {', '.join(known)}){hint}"
        return f"unknown key {bad!r}"
    if kind == "missing":
        return "required field is missing"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix):]
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)) or value is None:
        shown = repr(value)
        message += f" (got {shown[:60]})"
    return message


def _translate(exc: ValidationError, source: Optional[str]) -> InputError:
    errors = exc.errors()
    first = errors[0]
    message = _message(first).splitlines()[0]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return InputError(_dotted(first.get("loc", ())), message, source=source)


def _check_links(scenario: Scenario, presets: Any, source: Optional[str]) -> None:
    for name, value in scenario.links.items():
        resolve_link(value, f"links.{name}", presets=presets, source=source)
    for index, variant in enumerate(scenario.variants):
        for name, value in variant.links.items():
            resolve_link(value, f"variants.{index}.links.{name}", presets=presets, source=source)


def _check_cross_fields(scenario: Scenario, topologies: Optional[Collection[str]], source: Optional[str]) -> None:
    if topologies is not None and scenario.topology not in topologies:
        known = ", ".join(sorted(topologies)) or "none"
        raise InputError("topology", f"unknown topology {scenario.topology!r} (known: {known})", source=source)
    first_index: Dict[str, int] = {}
    for index, variant in enumerate(scenario.variants):
        if variant.name in first_index:
            raise InputError(
                f"variants.{index}.name",
                f"duplicate variant name {variant.name!r} (also variants.{first_index[variant.name]})",
                source=source,
            )
        first_index[variant.name] = index
    if scenario.endpoints is not None and scenario.endpoints.src == scenario.endpoints.dst:
        raise InputError("endpoints.dst", "src and dst must be different hosts", source=source)


def _check_cost(value: Dict[str, Any], source: Optional[str]):
    """The ``cost:`` section: testbed.cost's config, plus ``daily_volume`` for a monthly figure."""
    from testbed import cost

    body = dict(value)
    daily = body.pop("daily_volume", None)
    if daily is not None:
        try:
            daily = parse_size_bytes(daily, "cost.daily_volume")
        except InputError as exc:
            raise InputError("cost.daily_volume", exc.message, source=source) from exc
    return cost.parse_config(body, "cost", source), daily


def parse_scenario(
    data: Any,
    source: Optional[str] = None,
    topologies: Optional[Collection[str]] = None,
    presets: Any = None,
) -> Scenario:
    """Validate an already-parsed scenario document (a dict)."""
    if not isinstance(data, dict):
        raise InputError("<top>", "a scenario must be a YAML mapping", source=source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, source) from exc
    _check_cross_fields(scenario, topologies, source)
    for index, variant in enumerate(scenario.variants):
        try:
            timeline = scenario.variant_measure(index).timeline
        except ValidationError as exc:
            err = _translate(exc, source)
            raise InputError(f"variants.{index}.measure.{err.field}", err.message, source=source) from exc
        if timeline is not None:
            try:
                timeline.parsed_events(scenario.events_field(index))
            except InputError as exc:
                raise InputError(exc.field, exc.message, source=source) from exc
    if presets is None:
        presets = load_presets()
    _check_links(scenario, presets, source)
    scenario._cost = _check_cost(scenario.cost, source)
    scenario._source = source
    scenario._presets = presets
    return scenario


def _apply_quick(data: dict, source: str) -> dict:
    quick = data.get("quick") or {}
    if not isinstance(quick, dict):
        raise InputError("quick", "must be a mapping of dotted keys to values", source=source)
    result = apply_overrides(data, [], source=source)  # deep copy
    for key, value in quick.items():
        if not isinstance(key, str):
            raise InputError(f"quick.{key}", "keys must be dotted strings", source=source)
        try:
            set_dotted(result, key, value, source=source)
        except InputError as exc:
            raise InputError(f"quick.{key}", exc.message, source=source) from exc
    return result


def load_scenario(
    path: Union[str, Path],
    overrides: Iterable[str] = (),
    quick: bool = False,
    topologies: Optional[Collection[str]] = None,
    presets: Any = None,
) -> Scenario:
    """Read, override and validate a scenario file.

    ``overrides`` are ``key=value`` items (``--set``), applied after the
    ``quick:`` section when ``quick`` is true. ``topologies`` is the collection
    of known topology names (None: not checked). ``presets`` defaults to
    :func:`testbed.presets.load_presets`.
    """
    source = str(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError("<top>", "a scenario file must be a YAML mapping", source=source)
    overrides = list(overrides)
    if presets is None:
        presets = load_presets()
    # --set first (it may edit the quick: section itself), then quick:, then
    # --set again so that a --set item wins over a quick: item for the same key.
    doc = apply_overrides(raw, overrides, source="--set")
    try:
        quick_doc = apply_overrides(_apply_quick(doc, source), overrides, source="--set")
    except InputError as quick_error:
        # a quick: item that cannot apply often means the document under it is
        # wrong (measure: none): blame the document's own field when it is
        try:
            parse_scenario(doc, source=source, topologies=topologies, presets=presets)
        except InputError as doc_error:
            if not doc_error.field.startswith("quick"):
                raise doc_error from quick_error
        raise
    scenario = parse_scenario(quick_doc if quick else doc, source=source, topologies=topologies, presets=presets)
    if not quick and scenario.quick:
        # Validate the quick variant too, so a bad quick: section fails now.
        try:
            parse_scenario(quick_doc, source=source, topologies=topologies, presets=presets)
        except InputError as exc:
            raise InputError(exc.field, f"{exc.message} (with the quick: overrides)", source=source) from exc
    return scenario


def list_scenarios(directory: Union[str, Path]) -> List[Tuple[str, Path, str]]:
    """``[(name, path, description), ...]`` for every ``*.yaml`` in ``directory``.

    Light: reads only the name and description, so ``testbed list`` still lists a
    file that does not validate (its description then says why it cannot load).
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    found: List[Tuple[str, Path, str]] = []
    for path in sorted(list(root.glob("*.yaml")) + list(root.glob("*.yml"))):
        try:
            data = read_yaml(path)
        except InputError as exc:
            found.append((path.stem, path, f"(unreadable: {exc.field}: {exc.message})"))
            continue
        if not isinstance(data, dict):
            found.append((path.stem, path, "(unreadable: not a mapping)"))
            continue
        name = data.get("name") if isinstance(data.get("name"), str) else path.stem
        description = data.get("description") if isinstance(data.get("description"), str) else ""
        found.append((name, path, description.strip().splitlines()[0] if description.strip() else ""))
    return sorted(found, key=lambda item: item[0])
