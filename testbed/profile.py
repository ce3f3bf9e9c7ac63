"""Link profiles: what an emulated link does to the packets crossing it.

A :class:`LinkProfile` describes ONE direction of a link in canonical units
(``rate_bps``, ``delay_ms``, ``loss_pct`` ...); a :class:`LinkSpec` holds the two
directions. "forward" is from a link's first endpoint to its second, as the
topology lists them; "reverse" is the way back. These are pure descriptions: the
delay backends (netem or the userspace delay line) turn them into kernel state.

User input uses tc-like field names and strings (see :mod:`testbed.units`)::

    rate: 1Gbit            # None/absent = unshaped
    delay: 5ms             # one way, this direction
    jitter: 1ms
    jitter_distribution: normal    # normal | pareto | paretonormal | uniform
    correlation: 25%       # delay correlation
    loss: 0.05%
    loss_model: random     # random | gilbert-elliott
    loss_burst: 4          # mean loss-burst length in packets (gilbert-elliott only)
    duplicate: 0%
    corrupt: 0%
    reorder: 0%            # off by default; needs delay > 0 (as in netem)
    queue: 1.5bdp          # 100 / "100pkt" packets, "256KiB" bytes, "2bdp" x BDP
    mtu: 9000              # bytes, 68..65535

Decisions (documented here because users meet them):

* **Default queue is 1.5 x BDP**, where BDP = rate x RTT and RTT defaults to
  twice this direction's delay. FACTS.md: "netem limit below 2 x rate x latency
  causes heavy loss"; 1.5 x rate x (2 x delay) = 3 x rate x delay clears that
  bar, while staying a modest buffer for a shaper. The BDP queue never goes
  below 64 packets (64 x MTU bytes), so a zero-delay link still has a sane
  queue; an unshaped link with a BDP queue gets 1000 packets.
* **Gilbert-Elliott** is the simple Gilbert model: the bad state loses every
  packet, the good state none. With loss L (fraction) and mean burst B packets,
  r = 1/B and p = L*r/(1-L), so the stationary loss p/(p+r) equals L.
* ``loss_burst`` given with ``loss_model: random`` is an error -- unless it was
  inherited from a preset and a more specific level chose ``random``, in which
  case it is dropped (the more specific choice wins).
* ``reorder > 0`` needs ``delay > 0``: netem reorders by sending some packets
  without the delay, so with no delay there is nothing to reorder against.
* A ``jitter_distribution`` with zero jitter is allowed and has no effect.
* A field set to ``null`` means "the default", which also removes a value
  inherited from a preset.

Every error raised for user input is an :class:`~testbed.errors.InputError`
whose field is the full dotted path, e.g. ``links.wan.delay``.
"""

from __future__ import annotations

import math
import re
from typing import (
    Annotated,
    Any,
    Callable,
    Dict,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from testbed.errors import InputError
from testbed.presets import load_presets
from testbed.units import (
    MAX_RATE_BPS,
    NUMBER_PATTERN,
    format_number,
    format_pct,
    format_rate,
    format_size_bytes,
    format_time,
    parse_pct,
    parse_rate_bps,
    parse_size_bytes,
    parse_time_ms,
)

__all__ = [
    "QueueSpec",
    "LinkProfile",
    "LinkSpec",
    "resolve_link",
    "USER_FIELDS",
    "DEFAULT_QUEUE",
    "DEFAULT_MTU_BYTES",
    "BDP_FLOOR_PACKETS",
    "UNSHAPED_QUEUE_PACKETS",
    "DEFAULT_LOSS_BURST_PKTS",
]

#: MTU assumed for queue sizing when a profile leaves ``mtu`` unset.
DEFAULT_MTU_BYTES = 1500
#: A BDP-sized queue never holds fewer than this many full-size packets.
BDP_FLOOR_PACKETS = 64
#: Shortest round trip a BDP queue is sized for (rate-only links have no delay of their own).
BDP_MIN_RTT_MS = 2.0
#: Queue of an unshaped link whose queue is given as a multiple of the BDP.
UNSHAPED_QUEUE_PACKETS = 1000
#: Default mean loss-burst length (packets) of the Gilbert-Elliott model.
DEFAULT_LOSS_BURST_PKTS = 4.0
#: Largest packet or byte count a queue may hold (the kernel keeps a u32).
_MAX_QUEUE_UNITS = 2**32 - 1

QueueKind = Literal["packets", "bytes", "bdp"]
JitterDistribution = Literal["normal", "pareto", "paretonormal", "uniform"]
LossModel = Literal["random", "gilbert-elliott"]

_Pct = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
_Ms = Annotated[float, Field(ge=0, allow_inf_nan=False)]

_QUEUE_BDP_RE = re.compile(rf"^\s*({NUMBER_PATTERN})\s*(?:x\s*)?bdp\s*$", re.IGNORECASE)
_QUEUE_PKT_RE = re.compile(
    rf"^\s*({NUMBER_PATTERN})\s*(?:p|pkt|pkts|packet|packets)?\s*$", re.IGNORECASE
)
_QUEUE_HELP = (
    "expected packets (100, '100pkt'), bytes ('256KiB', '1MB') "
    "or a multiple of the bandwidth-delay product ('1.5bdp', '2xBDP')"
)


class QueueSpec(BaseModel):
    """How long the link's queue is: packets, bytes, or a multiple of the BDP."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: QueueKind
    value: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_value(self) -> "QueueSpec":
        if self.kind != "bdp":
            if self.value != int(self.value):
                raise ValueError(f"a queue in {self.kind} needs a whole number, got {self.value}")
            if self.value > _MAX_QUEUE_UNITS:
                raise ValueError(f"a queue of {self.value:g} {self.kind} is too large")
        return self

    @classmethod
    def from_user(cls, value: Any, field: str) -> "QueueSpec":
        """Parse ``100``, ``"100pkt"``, ``"256KiB"``, ``"1MB"``, ``"2bdp"``, ``"1.5xBDP"``."""
        if isinstance(value, QueueSpec):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InputError(field, f"invalid queue {value!r}: {_QUEUE_HELP}")
        if isinstance(value, (int, float)):
            return cls._checked(field, value, "packets", float(value))
        match = _QUEUE_BDP_RE.match(value)
        if match:
            return cls._checked(field, value, "bdp", float(match.group(1)))
        match = _QUEUE_PKT_RE.match(value)
        if match:
            return cls._checked(field, value, "packets", float(match.group(1)))
        try:
            size_bytes = parse_size_bytes(value, field)
        except InputError as exc:
            raise InputError(field, f"invalid queue {value!r}: {_QUEUE_HELP}") from exc
        return cls._checked(field, value, "bytes", float(size_bytes))

    @classmethod
    def _checked(cls, field: str, raw: Any, kind: str, number: float) -> "QueueSpec":
        if not math.isfinite(number) or number <= 0:
            raise InputError(field, f"invalid queue {raw!r}: must be a finite number above 0")
        if kind != "bdp" and number != int(number):
            raise InputError(field, f"invalid queue {raw!r}: must be a whole number of {kind}")
        if kind != "bdp" and number > _MAX_QUEUE_UNITS:
            raise InputError(field, f"invalid queue {raw!r}: too large")
        return cls(kind=kind, value=number)

    def to_user(self) -> str:
        """The tc-like user form: ``"100pkt"``, ``"64KiB"``, ``"1.5bdp"``."""
        if self.kind == "packets":
            return f"{int(self.value)}pkt"
        if self.kind == "bytes":
            return format_size_bytes(int(self.value))
        return f"{format_number(self.value)}bdp"

    def limit(
        self, rate_bps: Optional[int], rtt_ms: float, mtu: Optional[int] = None
    ) -> Tuple[str, int]:
        """The queue limit as ``("packets", n)`` or ``("bytes", n)``.

        A BDP queue is ``value x rate_bps/8 x max(rtt_ms, BDP_MIN_RTT_MS)/1000``
        bytes (rounded up),
        at least ``BDP_FLOOR_PACKETS x mtu`` bytes; with no rate it is
        ``("packets", UNSHAPED_QUEUE_PACKETS)``. ``mtu`` None means 1500.
        """
        if self.kind == "packets":
            return ("packets", int(self.value))
        if self.kind == "bytes":
            return ("bytes", int(self.value))
        if rate_bps is None:
            return ("packets", UNSHAPED_QUEUE_PACKETS)
        if not math.isfinite(rtt_ms) or rtt_ms < 0:
            raise ValueError(f"rtt_ms must be a finite number >= 0, got {rtt_ms!r}")
        mtu_bytes = DEFAULT_MTU_BYTES if mtu is None else int(mtu)
        # A link's own delay may be zero (a rate-only link): the BDP then uses
        # BDP_MIN_RTT_MS, so the queue still grows with the rate (64 packets
        # at 5 Gbit/s made TCP retransmit a quarter of its segments).
        bdp_bytes = rate_bps / 8 * max(rtt_ms, BDP_MIN_RTT_MS) / 1000
        # round() first so float noise (3750000.0000000005) does not add a byte
        limit_bytes = math.ceil(round(self.value * bdp_bytes, 6))
        return ("bytes", max(limit_bytes, BDP_FLOOR_PACKETS * mtu_bytes))


#: Default queue: 1.5 x the bandwidth-delay product (see the module docstring).
DEFAULT_QUEUE = QueueSpec(kind="bdp", value=1.5)


class LinkProfile(BaseModel):
    """One direction of a link, in canonical units. Frozen; unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_bps: Optional[int] = Field(default=None, gt=0, le=MAX_RATE_BPS)  # None = unshaped
    delay_ms: _Ms = 0.0
    jitter_ms: _Ms = 0.0
    jitter_distribution: JitterDistribution = "normal"
    correlation_pct: _Pct = 0.0  # delay correlation
    loss_pct: _Pct = 0.0
    loss_model: LossModel = "random"
    loss_burst_pkts: float = Field(default=DEFAULT_LOSS_BURST_PKTS, ge=1, allow_inf_nan=False)
    duplicate_pct: _Pct = 0.0
    corrupt_pct: _Pct = 0.0
    reorder_pct: _Pct = 0.0
    queue: QueueSpec = DEFAULT_QUEUE
    mtu: Optional[int] = Field(default=None, ge=68, le=65535)  # bytes; None = leave as is

    @model_validator(mode="after")
    def _check_consistency(self) -> "LinkProfile":
        problem = _consistency_problem(self)
        if problem is not None:
            names, message = problem
            raise ValueError(f"{names[0]}: {message}")
        if self.loss_model == "random" and self.loss_burst_pkts != DEFAULT_LOSS_BURST_PKTS:
            raise ValueError("loss_burst: applies only to loss_model gilbert-elliott")
        return self

    @property
    def is_shaped(self) -> bool:
        """True when the rate is limited."""
        return self.rate_bps is not None

    @property
    def has_impairment(self) -> bool:
        """True when any of delay, jitter, loss, duplicate, corrupt, reorder is non-zero."""
        return any(
            value > 0
            for value in (
                self.delay_ms,
                self.jitter_ms,
                self.loss_pct,
                self.duplicate_pct,
                self.corrupt_pct,
                self.reorder_pct,
            )
        )

    def gilbert_elliott_params(self) -> Dict[str, float]:
        """Gilbert-Elliott parameters, probabilities 0..1, in the classic naming.

        ``p``: good -> bad transition; ``r``: bad -> good; ``h``: probability a
        packet gets THROUGH in the bad state (0: the bad state loses all);
        ``k``: probability a packet gets through in the good state (1: none lost).
        tc takes them as ``loss gemodel p r 1-h 1-k`` in percent; the kernel's
        ``struct tc_netem_gemodel`` wants ``p, r, h, k1 = 1-k`` scaled to u32.
        Raises ValueError when ``loss_model`` is not ``gilbert-elliott``.
        """
        if self.loss_model != "gilbert-elliott":
            raise ValueError("gilbert_elliott_params() needs loss_model 'gilbert-elliott'")
        return _gilbert_elliott(self.loss_pct, self.loss_burst_pkts)

    def queue_limit(self, rtt_ms: Optional[float] = None) -> Tuple[str, int]:
        """This direction's queue limit; ``rtt_ms`` defaults to twice ``delay_ms``."""
        if rtt_ms is None:
            rtt_ms = 2 * self.delay_ms
        return self.queue.limit(self.rate_bps, rtt_ms, self.mtu)

    @classmethod
    def from_user(
        cls, data: Any, field: str = "link", source: Optional[str] = None
    ) -> "LinkProfile":
        """Build from user field names and tc-like values; errors name ``field.<name>``."""
        if isinstance(data, LinkProfile):
            return data
        if not isinstance(data, Mapping):
            raise InputError(
                field,
                f"expected a mapping of link fields ({', '.join(USER_FIELDS)}), "
                f"got {type(data).__name__} {data!r}",
                source,
            )
        _reject_unknown(data, field, USER_FIELDS, source)
        return _build_profile([(field, data)], source)

    def to_user(self) -> Dict[str, Any]:
        """The tc-like user form: ``rate`` (None if unshaped) plus non-default fields.

        ``LinkProfile.from_user(p.to_user()) == p`` for every profile ``p``.
        """
        out: Dict[str, Any] = {
            "rate": None if self.rate_bps is None else format_rate(self.rate_bps)
        }
        for user_name in USER_FIELDS[1:]:
            canon, _parse, fmt = _FIELDS[user_name]
            value = getattr(self, canon)
            if value != LinkProfile.model_fields[canon].default:
                out[user_name] = fmt(value)
        return out


class LinkSpec(BaseModel):
    """Both directions of one link: forward (first endpoint -> second) and reverse."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    forward: LinkProfile = Field(default_factory=lambda: LinkProfile())
    reverse: LinkProfile = Field(default_factory=lambda: LinkProfile())

    @classmethod
    def symmetric(cls, profile: LinkProfile) -> "LinkSpec":
        """The same profile in both directions."""
        return cls(forward=profile, reverse=profile)

    @property
    def is_symmetric(self) -> bool:
        return self.forward == self.reverse

    @property
    def rtt_ms(self) -> float:
        """Configured round-trip delay over this link: forward + reverse delay."""
        return self.forward.delay_ms + self.reverse.delay_ms

    def queue_limits(self) -> Tuple[Tuple[str, int], Tuple[str, int]]:
        """(forward, reverse) queue limits, BDPs computed on this link's RTT."""
        rtt_ms = self.rtt_ms
        return (self.forward.queue_limit(rtt_ms), self.reverse.queue_limit(rtt_ms))

    def to_user(self) -> Dict[str, Any]:
        """User form: the flat profile if symmetric, else ``{forward: ..., reverse: ...}``.

        ``resolve_link(spec.to_user(), field) == spec``.
        """
        if self.is_symmetric:
            return self.forward.to_user()
        return {"forward": self.forward.to_user(), "reverse": self.reverse.to_user()}


def resolve_link(
    value: Any,
    field: str,
    presets: Optional[Mapping[str, Mapping[str, Any]]] = None,
    source: Optional[str] = None,
) -> LinkSpec:
    """Turn a user's link description into a :class:`LinkSpec`.

    Accepted forms (``presets`` defaults to the shipped ones, :func:`load_presets`):

    * ``"internet-transit"`` -- a preset name, same both ways;
    * ``{rate: 1Gbit, delay: 5ms}`` -- profile fields, same both ways;
    * ``{preset: internet-transit, loss: 1%}`` -- a preset with overrides;
    * any mapping above plus ``forward: {...}`` and/or ``reverse: {...}``, which
      override per direction on top of the shared part.

    Also passes a :class:`LinkSpec` through and makes a :class:`LinkProfile`
    symmetric. Errors name ``field`` (e.g. ``links.wan.forward.delay``); a bad
    value inside a preset is named ``presets.<name>.<field>``.
    """
    if isinstance(value, LinkSpec):
        return value
    if isinstance(value, LinkProfile):
        return LinkSpec.symmetric(value)
    if presets is None:
        presets = load_presets()
    if isinstance(value, str):
        base = _preset_part(value, field, presets, source)
        return LinkSpec.symmetric(_build_profile([base], source))
    if not isinstance(value, Mapping):
        raise InputError(
            field,
            f"expected a preset name or a mapping of link fields, "
            f"got {type(value).__name__} {value!r}",
            source,
        )
    _reject_unknown(value, field, _LINK_KEYS, source)
    parts: List[Tuple[str, Mapping[str, Any]]] = []
    if value.get("preset") is not None:
        parts.append(_preset_part(value["preset"], f"{field}.preset", presets, source))
    parts.append((field, {k: v for k, v in value.items() if k in _FIELDS}))
    directions: Dict[str, LinkProfile] = {}
    for direction in ("forward", "reverse"):
        path = f"{field}.{direction}"
        override = value.get(direction)
        if override is None:
            override = {}
        if not isinstance(override, Mapping):
            raise InputError(
                path,
                f"expected a mapping of link fields, got {type(override).__name__} {override!r}",
                source,
            )
        _reject_unknown(override, path, USER_FIELDS, source)
        directions[direction] = _build_profile(parts + [(path, override)], source)
    return LinkSpec(**directions)


# ------------------------------------------------------------------ internals


def _gilbert_elliott(loss_pct: float, burst_pkts: float) -> Dict[str, float]:
    loss = loss_pct / 100
    r = 1 / burst_pkts
    p = loss * r / (1 - loss)
    return {"p": p, "r": r, "h": 0.0, "k": 1.0}


def _consistency_problem(profile: LinkProfile) -> Optional[Tuple[Tuple[str, ...], str]]:
    """A cross-field problem as ((user field, fallback fields...), message), or None."""
    if profile.loss_model == "gilbert-elliott":
        if not 0 < profile.loss_pct < 100:
            return (
                ("loss", "loss_model"),
                f"loss_model gilbert-elliott needs a loss above 0% and below 100%, "
                f"got {format_pct(profile.loss_pct)}",
            )
        params = _gilbert_elliott(profile.loss_pct, profile.loss_burst_pkts)
        if params["p"] > 1:
            loss = profile.loss_pct / 100
            return (
                ("loss_burst", "loss"),
                f"a mean loss burst of {format_number(profile.loss_burst_pkts)} packet(s) "
                f"cannot give {format_pct(profile.loss_pct)} loss (good-to-bad probability "
                f"would be {params['p']:.3g} > 1); use a loss_burst of at least "
                f"{loss / (1 - loss):.3g}",
            )
    if profile.reorder_pct > 0 and profile.delay_ms <= 0:
        return (
            ("reorder", "delay"),
            "reorder needs a delay above 0 (as in netem, reordered packets are the "
            "ones sent without the delay)",
        )
    return None


def _parse_choice(
    choices: Sequence[str], aliases: Mapping[str, str]
) -> Callable[[Any, str], str]:
    def parse(value: Any, field: str) -> str:
        if isinstance(value, str):
            key = value.strip().lower().replace("_", "-")
            key = aliases.get(key, key)
            if key in choices:
                return key
        raise InputError(field, f"invalid value {value!r}: expected one of {', '.join(choices)}")

    return parse


def _parse_mtu(value: Any, field: str) -> int:
    number: Optional[int] = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        number = int(value)
    if number is None:
        raise InputError(field, f"invalid mtu {value!r}: expected a whole number of bytes")
    if not 68 <= number <= 65535:
        raise InputError(field, f"invalid mtu {value!r}: must be between 68 and 65535 bytes")
    return number


_BURST_RE = re.compile(
    rf"^\s*({NUMBER_PATTERN})\s*(?:p|pkt|pkts|packet|packets)?\s*$", re.IGNORECASE
)


def _parse_burst(value: Any, field: str) -> float:
    number: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        match = _BURST_RE.match(value)
        if match:
            number = float(match.group(1))
    if number is None or not math.isfinite(number):
        raise InputError(
            field, f"invalid loss_burst {value!r}: expected a number of packets, e.g. 4"
        )
    if number < 1:
        raise InputError(field, f"invalid loss_burst {value!r}: must be at least 1 packet")
    return number


def _same(value: Any) -> Any:
    return value


# user name -> (canonical field, parser(value, field), formatter(canonical) -> user value)
_FIELDS: Dict[str, Tuple[str, Callable[[Any, str], Any], Callable[[Any], Any]]] = {
    "rate": ("rate_bps", parse_rate_bps, format_rate),
    "delay": ("delay_ms", parse_time_ms, format_time),
    "jitter": ("jitter_ms", parse_time_ms, format_time),
    "jitter_distribution": (
        "jitter_distribution",
        _parse_choice(
            ("normal", "pareto", "paretonormal", "uniform"), {"pareto-normal": "paretonormal"}
        ),
        _same,
    ),
    "correlation": ("correlation_pct", parse_pct, format_pct),
    "loss": ("loss_pct", parse_pct, format_pct),
    "loss_model": (
        "loss_model",
        _parse_choice(
            ("random", "gilbert-elliott"),
            {"ge": "gilbert-elliott", "gemodel": "gilbert-elliott", "gilbert": "gilbert-elliott"},
        ),
        _same,
    ),
    "loss_burst": ("loss_burst_pkts", _parse_burst, _same),
    "duplicate": ("duplicate_pct", parse_pct, format_pct),
    "corrupt": ("corrupt_pct", parse_pct, format_pct),
    "reorder": ("reorder_pct", parse_pct, format_pct),
    "queue": ("queue", QueueSpec.from_user, QueueSpec.to_user),
    "mtu": ("mtu", _parse_mtu, int),
}

#: User-facing link profile field names, in their documented order.
USER_FIELDS: Tuple[str, ...] = tuple(_FIELDS)
_CANON_TO_USER = {canon: user for user, (canon, _p, _f) in _FIELDS.items()}
_LINK_KEYS: Tuple[str, ...] = ("preset", "forward", "reverse") + USER_FIELDS


def _reject_unknown(
    data: Mapping[Any, Any], field: str, allowed: Sequence[str], source: Optional[str]
) -> None:
    for key in data:
        if key not in allowed:
            raise InputError(
                f"{field}.{key}",
                f"unknown field {key!r}; allowed: {', '.join(allowed)}",
                source,
            )


def _preset_part(
    name: Any, field: str, presets: Mapping[str, Mapping[str, Any]], source: Optional[str]
) -> Tuple[str, Mapping[str, Any]]:
    known = ", ".join(sorted(presets)) or "(none)"
    if not isinstance(name, str) or name not in presets:
        raise InputError(field, f"unknown preset {name!r}; known presets: {known}", source)
    body = presets[name]
    path = f"presets.{name}"
    if not isinstance(body, Mapping):
        raise InputError(path, "a preset must be a mapping of link fields", source)
    _reject_unknown(body, path, USER_FIELDS, source)
    return (path, body)


def _build_profile(
    parts: Sequence[Tuple[str, Mapping[str, Any]]], source: Optional[str]
) -> LinkProfile:
    """Merge (path prefix, user fields) parts, later ones winning, into a profile."""
    merged: Dict[str, Any] = {}
    origin: Dict[str, str] = {}
    level: Dict[str, int] = {}
    for index, (prefix, part) in enumerate(parts):
        _reject_unknown(part, prefix, USER_FIELDS, source)
        for key, value in part.items():
            merged[key] = value
            origin[key] = prefix
            level[key] = index

    def path(user_name: str) -> str:
        return f"{origin.get(user_name, parts[-1][0])}.{user_name}"

    kwargs: Dict[str, Any] = {}
    try:
        for key, value in merged.items():
            if value is None:
                continue
            canon, parse, _fmt = _FIELDS[key]
            kwargs[canon] = parse(value, path(key))
    except InputError as exc:
        if source is None or exc.source is not None:
            raise
        raise InputError(exc.field, exc.message, source) from exc

    if "loss_burst_pkts" in kwargs and kwargs.get("loss_model", "random") != "gilbert-elliott":
        if level["loss_burst"] >= level.get("loss_model", -1):
            raise InputError(
                path("loss_burst"),
                "loss_burst applies only to loss_model gilbert-elliott",
                source,
            )
        del kwargs["loss_burst_pkts"]  # inherited, and a more specific level chose random

    probe = LinkProfile.model_construct(**kwargs)
    problem = _consistency_problem(probe)
    if problem is not None:
        names, message = problem
        named = next((n for n in names if n in origin), names[0])
        raise InputError(path(named), message, source)
    try:
        return LinkProfile(**kwargs)
    except ValidationError as exc:  # parsers should catch all; keep the path if not
        first = exc.errors()[0]
        loc = first.get("loc") or ("?",)
        user_name = _CANON_TO_USER.get(str(loc[0]), str(loc[0]))
        raise InputError(path(user_name), str(first.get("msg")), source) from exc
