"""Egress cost: what the bytes that left each site over a link would cost.

Prices live in ``testbed/data/prices.yaml`` (package data, read with
``yaml.safe_load`` through :mod:`importlib.resources`, like the presets), one
*class* per kind of link: ``internet`` (with ``internet-gcp``,
``internet-aws`` and ``internet-azure`` as named alternatives),
``interconnect``, ``interconnect-capacity``, ``vpn`` and ``intra-site``. Each
number there cites FACTS.md. A class is a flat price or a list of tiers by the
month's volume, per GiB (2**30 bytes) or per GB (10**9 bytes), never mixed up.

Which bytes count (see docs/cost.md): a cloud charges the *sender* for
egress, so each direction of a link is counted as egress of the site that
sent it, when it crosses into another site. Bytes sent by a carrier site
(``transit``: the routers of internet transit, which bill nobody here) and
bytes that stay in their site are not counted. Both directions of an
inter-site link are therefore egress, of one side or the other.

Kernel-free: the byte counts come from :mod:`testbed.lab.counters`; this
module only prices them. Everything user-facing raises
:class:`~testbed.errors.InputError` naming the field.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import yaml

from testbed.errors import InputError
from testbed.units import parse_size_bytes

__all__ = [
    "PRICES_RESOURCE",
    "GB_BYTES",
    "GIB_BYTES",
    "CARRIER_SITES",
    "Tier",
    "PriceClass",
    "CostConfig",
    "load_prices",
    "default_link_classes",
    "apply_price_overrides",
    "parse_config",
    "egress_cost_usd",
    "scenario_cost",
    "monthly_cost",
    "monthly_mix",
    "link_class",
    "preset_of",
    "link_presets",
    "egress_bytes",
    "traffic_cost",
]

#: Where the price table lives, relative to the ``testbed`` package.
PRICES_RESOURCE = "data/prices.yaml"
_SHIPPED_SOURCE = f"testbed/{PRICES_RESOURCE}"
GB_BYTES = 10**9
GIB_BYTES = 2**30
#: Sites whose nodes carry traffic between clouds but bill nobody here: the
#: two-clouds topology puts its transit routers in site ``transit``.
CARRIER_SITES: Tuple[str, ...] = ("transit",)

_PRICE_UNITS = {"price_per_gib": GIB_BYTES, "price_per_gb": GB_BYTES}
_UNIT_NAMES = {GIB_BYTES: "GiB", GB_BYTES: "GB"}
_CLASS_KEYS = ("price_per_gib", "price_per_gb", "tiers", "same_as")
_CONFIG_KEYS = ("prices", "link_classes", "default_class", "carrier_sites")


@dataclass(frozen=True)
class Tier:
    """``price_usd`` per ``unit_bytes`` for the volume up to ``up_to_bytes`` (None: no end)."""

    up_to_bytes: Optional[int]
    price_usd: float
    unit_bytes: int

    def to_dict(self) -> dict:
        return {"up_to_bytes": self.up_to_bytes,
                f"price_per_{_UNIT_NAMES[self.unit_bytes].lower()}": self.price_usd}


@dataclass(frozen=True)
class PriceClass:
    """One link class: its tiers in order (a flat price is a single tier)."""

    name: str
    tiers: Tuple[Tier, ...]
    description: str = ""

    def cost_usd(self, size_bytes: float) -> float:
        """Price of ``size_bytes`` of one month's egress, tier by tier in order."""
        usd, start_bytes = 0.0, 0
        for tier in self.tiers:
            end_bytes = size_bytes if tier.up_to_bytes is None else min(size_bytes, tier.up_to_bytes)
            if end_bytes > start_bytes:
                usd += (end_bytes - start_bytes) / tier.unit_bytes * tier.price_usd
            if tier.up_to_bytes is None or size_bytes <= tier.up_to_bytes:
                break
            start_bytes = tier.up_to_bytes
        return usd

    def to_dict(self) -> dict:
        return {"description": self.description, "tiers": [t.to_dict() for t in self.tiers]}


@dataclass(frozen=True)
class CostConfig:
    """Everything pricing needs: classes, link -> class rules, carrier sites."""

    prices: Dict[str, PriceClass]
    link_classes: Dict[str, str]
    default_class: str
    carrier_sites: Tuple[str, ...] = CARRIER_SITES


# ---------------------------------------------------------------- the table


def _mapping(value: Any, field_name: str, source: Optional[str], what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InputError(field_name, f"expected {what}, got {type(value).__name__} {value!r}", source)
    return value


def _price(value: Any, field_name: str, source: Optional[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field_name, f"expected a price in US dollars (a number), got {value!r}", source)
    if value < 0:
        raise InputError(field_name, f"a price cannot be negative, got {value!r}", source)
    return float(value)


def _one_price(body: Mapping, field_name: str, source: Optional[str]) -> Tuple[float, int]:
    given = [k for k in _PRICE_UNITS if k in body]
    if len(given) != 1:
        raise InputError(field_name, "give exactly one of price_per_gib (per 2**30 bytes) "
                         "or price_per_gb (per 10**9 bytes)", source)
    key = given[0]
    return _price(body[key], f"{field_name}.{key}", source), _PRICE_UNITS[key]


def _bound(body: Mapping, field_name: str, source: Optional[str]) -> Optional[int]:
    if "up_to" in body and "up_to_bytes" in body:
        raise InputError(f"{field_name}.up_to", "give up_to or up_to_bytes, not both", source)
    if "up_to_bytes" in body:
        value = body["up_to_bytes"]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{field_name}.up_to_bytes",
                             f"expected a whole number of bytes above 0, got {value!r}", source)
        return value
    if "up_to" in body:
        try:
            value = parse_size_bytes(body["up_to"], f"{field_name}.up_to")
        except InputError as exc:
            raise InputError(exc.field, exc.message, source) from None
        if value <= 0:
            raise InputError(f"{field_name}.up_to", "must be above 0 bytes", source)
        return value
    return None


def _tiers(value: Any, field_name: str, source: Optional[str]) -> Tuple[Tier, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(field_name, "expected a non-empty list of tiers", source)
    tiers = []
    previous_bytes = 0
    for i, raw in enumerate(value):
        path = f"{field_name}[{i}]"
        body = _mapping(raw, path, source, "a mapping {up_to: SIZE, price_per_gib: X}")
        unknown = sorted(set(body) - {"up_to", "up_to_bytes", *_PRICE_UNITS})
        if unknown:
            raise InputError(f"{path}.{unknown[0]}", "unknown tier field (known: up_to, "
                             "up_to_bytes, price_per_gib, price_per_gb)", source)
        up_to_bytes = _bound(body, path, source)
        last = i == len(value) - 1
        if last and up_to_bytes is not None:
            raise InputError(f"{path}.up_to", "the last tier prices everything above the one "
                             "before it: leave up_to out", source)
        if not last and up_to_bytes is None:
            raise InputError(f"{path}.up_to", "every tier but the last needs an upper bound", source)
        if up_to_bytes is not None and up_to_bytes <= previous_bytes:
            raise InputError(f"{path}.up_to", f"tier bounds must increase ({up_to_bytes} bytes "
                             f"is not above {previous_bytes})", source)
        price_usd, unit_bytes = _one_price(body, path, source)
        tiers.append(Tier(up_to_bytes, price_usd, unit_bytes))
        previous_bytes = up_to_bytes or previous_bytes
    return tuple(tiers)


def _parse_class(name: str, raw: Any, field_name: str, source: Optional[str]):
    """A :class:`PriceClass`, or ``("same_as", other, description)`` to resolve later."""
    body = _mapping(raw, field_name, source,
                    "a mapping with price_per_gib, price_per_gb, tiers or same_as")
    unknown = sorted(set(body) - {*_CLASS_KEYS, "description"})
    if unknown:
        raise InputError(f"{field_name}.{unknown[0]}",
                         "unknown field (known: " + ", ".join(_CLASS_KEYS) + ", description)", source)
    description = body.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{field_name}.description", "must be a string", source)
    description = " ".join(description.split())
    given = [k for k in _CLASS_KEYS if k in body]
    if len(given) != 1:
        raise InputError(field_name, "give exactly one of " + ", ".join(_CLASS_KEYS), source)
    if given[0] == "same_as":
        other = body["same_as"]
        if not isinstance(other, str):
            raise InputError(f"{field_name}.same_as", f"expected a class name, got {other!r}", source)
        return ("same_as", other, description)
    if given[0] == "tiers":
        return PriceClass(name, _tiers(body["tiers"], f"{field_name}.tiers", source), description)
    price_usd, unit_bytes = _one_price(body, field_name, source)
    return PriceClass(name, (Tier(None, price_usd, unit_bytes),), description)


def _check_class_name(name: Any, field_name: str, source: Optional[str]) -> str:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
        raise InputError(field_name, f"a class name uses letters, digits, '-' and '_', got {name!r}",
                         source)
    return name


def _resolve(parsed: Dict[str, Any], fields: Dict[str, Tuple[str, Optional[str]]]) -> Dict[str, PriceClass]:
    """Follow ``same_as`` references (refusing unknown names and cycles)."""
    out: Dict[str, PriceClass] = {}
    for name in parsed:
        seen = [name]
        target = parsed[name]
        while not isinstance(target, PriceClass):
            other = target[1]
            field_name, source = fields[seen[-1]]
            if other not in parsed:
                raise InputError(f"{field_name}.same_as", f"no price class {other!r} (classes: "
                                 + ", ".join(sorted(parsed)) + ")", source)
            if other in seen:
                # blame the user's entry in the circle, if one is: the shipped table has none
                culprit = next((n for n in seen if fields[n][1] != _SHIPPED_SOURCE), seen[-1])
                field_name, source = fields[culprit]
                raise InputError(f"{field_name}.same_as", "same_as goes round in a circle: "
                                 + " -> ".join(seen + [other]), source)
            seen.append(other)
            target = parsed[other]
        own = parsed[name]
        description = own[2] if isinstance(own, tuple) and own[2] else target.description
        out[name] = PriceClass(name, target.tiers, description)
    return out


@functools.lru_cache(maxsize=1)
def _shipped() -> Tuple[Dict[str, Any], Dict[str, str], str]:
    """The shipped file, shape-checked once: (raw classes, link classes, default class)."""
    folder, name = PRICES_RESOURCE.split("/")
    path = resources.files("testbed").joinpath(folder).joinpath(name)
    source = _SHIPPED_SOURCE
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError("prices", f"cannot read the price table: {exc}", source) from exc
    document = _mapping(document, "prices", source, "a mapping")
    classes = dict(_mapping(document.get("classes"), "classes", source, "a mapping of classes"))
    links = dict(_mapping(document.get("link_classes"), "link_classes", source, "a mapping"))
    default = document.get("default_class")
    return classes, links, default


def _build(raw: Mapping[str, Any], overrides: Mapping[str, Any], field_name: str,
           source: Optional[str]) -> Dict[str, PriceClass]:
    shipped_source = _SHIPPED_SOURCE
    parsed: Dict[str, Any] = {}
    fields: Dict[str, Tuple[str, Optional[str]]] = {}
    for name, body in raw.items():
        _check_class_name(name, f"classes.{name}", shipped_source)
        parsed[name] = _parse_class(name, body, f"classes.{name}", shipped_source)
        fields[name] = (f"classes.{name}", shipped_source)
    for name, body in overrides.items():
        _check_class_name(name, f"{field_name}.{name}", source)
        parsed[name] = _parse_class(name, body, f"{field_name}.{name}", source)
        fields[name] = (f"{field_name}.{name}", source)
    return _resolve(parsed, fields)


def load_prices() -> Dict[str, PriceClass]:
    """The shipped price table: class name -> :class:`PriceClass`."""
    return _build(_shipped()[0], {}, "prices", None)


def default_link_classes() -> Dict[str, str]:
    """The shipped rules: preset (or link) name -> class name."""
    return dict(_shipped()[1])


def apply_price_overrides(overrides: Any, field_name: str = "prices",
                          source: Optional[str] = None) -> Dict[str, PriceClass]:
    """The shipped table with ``overrides`` (class -> {price_per_gb | price_per_gib | tiers | same_as}).

    An override replaces a class whole (or adds a new one); classes that say
    ``same_as`` follow it (overriding ``internet`` moves ``vpn`` too).
    Errors name the field, e.g. ``prices.internet.tiers[1].up_to``.
    """
    overrides = {} if overrides is None else _mapping(
        overrides, field_name, source, "a mapping of class name -> prices")
    return _build(_shipped()[0], overrides, field_name, source)


def _check_class(name: Any, prices: Mapping[str, PriceClass], field_name: str,
                 source: Optional[str] = None) -> str:
    if not isinstance(name, str) or name not in prices:
        raise InputError(field_name, f"no price class {name!r} (classes: "
                         + ", ".join(sorted(prices)) + ")", source)
    return name


def parse_config(value: Any = None, field_name: str = "cost", source: Optional[str] = None) -> CostConfig:
    """Validate a scenario's ``cost:`` section (None: the shipped defaults).

    Keys: ``prices`` (class overrides), ``link_classes`` (link or preset name
    -> class), ``default_class``, ``carrier_sites`` (site names whose sending
    is not egress). Unknown keys are refused.
    """
    body = {} if value is None else _mapping(value, field_name, source, "a mapping")
    unknown = sorted(set(body) - set(_CONFIG_KEYS))
    if unknown:
        raise InputError(f"{field_name}.{unknown[0]}",
                         "unknown field (known: " + ", ".join(_CONFIG_KEYS) + ")", source)
    prices = apply_price_overrides(body.get("prices"), f"{field_name}.prices", source)
    shipped_source = _SHIPPED_SOURCE
    rules: Dict[str, str] = {}
    for name, cls in default_link_classes().items():
        rules[name] = _check_class(cls, prices, f"link_classes.{name}", shipped_source)
    user_rules = body.get("link_classes") or {}
    _mapping(user_rules, f"{field_name}.link_classes", source, "a mapping of link name -> class")
    for name, cls in user_rules.items():
        if not isinstance(name, str):
            raise InputError(f"{field_name}.link_classes", f"expected a link name, got {name!r}", source)
        rules[name] = _check_class(cls, prices, f"{field_name}.link_classes.{name}", source)
    if "default_class" in body:
        default = _check_class(body["default_class"], prices, f"{field_name}.default_class", source)
    else:
        default = _check_class(_shipped()[2], prices, "default_class", shipped_source)
    carriers = body.get("carrier_sites", list(CARRIER_SITES))
    if not isinstance(carriers, list) or not all(isinstance(s, str) for s in carriers):
        raise InputError(f"{field_name}.carrier_sites",
                         f"expected a list of site names, got {carriers!r}", source)
    return CostConfig(prices, rules, default, tuple(carriers))


# ---------------------------------------------------------------- pricing


def _volume(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise InputError(field_name, f"expected a number of bytes >= 0, got {value!r}")
    return value


def _prices(prices: Optional[Mapping[str, PriceClass]]) -> Mapping[str, PriceClass]:
    return load_prices() if prices is None else prices


def egress_cost_usd(size_bytes: float, link_class: str,
                    prices: Optional[Mapping[str, PriceClass]] = None) -> float:
    """US dollars for ``size_bytes`` of one month's egress of ``link_class``, tiers in order."""
    prices = _prices(prices)
    _check_class(link_class, prices, "link_class")
    return prices[link_class].cost_usd(_volume(size_bytes, "size_bytes"))


def scenario_cost(bytes_by_link: Mapping[str, float], class_by_link: Mapping[str, str],
                  prices: Optional[Mapping[str, PriceClass]] = None) -> dict:
    """Price each link's egress bytes; tiers apply to each class's total volume.

    A tiered price depends on the whole volume on one bill, not on one link:
    the links of a class are priced as one bill and each link gets its share
    in proportion to its bytes. Returns ``{"links": {link: {"egress_bytes",
    "class", "usd"}}, "classes": {class: {"egress_bytes", "usd"}},
    "total_bytes", "total_usd"}``.
    """
    prices = _prices(prices)
    missing = sorted(set(bytes_by_link) - set(class_by_link))
    if missing:
        raise InputError(f"class_by_link.{missing[0]}", "this link has bytes but no class")
    volumes: Dict[str, float] = {}
    for link, size in bytes_by_link.items():
        _volume(size, f"bytes_by_link.{link}")
        cls = _check_class(class_by_link[link], prices, f"class_by_link.{link}")
        volumes[cls] = volumes.get(cls, 0) + size
    classes = {cls: {"egress_bytes": size, "usd": prices[cls].cost_usd(size)}
               for cls, size in volumes.items()}
    links = {}
    for link, size in bytes_by_link.items():
        cls = class_by_link[link]
        total = classes[cls]
        share = size / total["egress_bytes"] if total["egress_bytes"] else 0.0
        links[link] = {"egress_bytes": size, "class": cls, "usd": total["usd"] * share}
    return {
        "links": links,
        "classes": classes,
        "total_bytes": sum(volumes.values()),
        "total_usd": sum(c["usd"] for c in classes.values()),
    }


def monthly_cost(daily_bytes: float, link_class: str,
                 prices: Optional[Mapping[str, PriceClass]] = None, days: int = 30) -> dict:
    """A month of ``daily_bytes`` a day over ``link_class``: tiers on the month's volume.

    Returns ``{"link_class", "days", "daily_bytes", "monthly_bytes", "usd"}``.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 31:
        raise InputError("days", f"expected a whole number of days from 1 to 31, got {days!r}")
    daily = _volume(daily_bytes, "daily_bytes")
    monthly_bytes = daily * days
    return {
        "link_class": link_class,
        "days": days,
        "daily_bytes": daily,
        "monthly_bytes": monthly_bytes,
        "usd": egress_cost_usd(monthly_bytes, link_class, prices),
    }


def monthly_mix(daily_bytes: float, cost_doc: Mapping[str, Any], config: Optional[CostConfig] = None,
                days: int = 30) -> dict:
    """A month of ``daily_bytes`` a day split over link classes as a run's egress was.

    ``cost_doc`` is a :func:`traffic_cost` document; each class gets its share
    of the daily volume and is priced on its month's volume (tiers apply).
    Returns ``{"daily_bytes", "days", "link_class": "mix", "by_class": {class: usd}, "usd"}``.
    """
    config = config or parse_config()
    daily = _volume(daily_bytes, "cost.daily_volume")
    total = float(cost_doc.get("total_bytes") or 0)
    by_class: Dict[str, float] = {}
    for cls, info in (cost_doc.get("classes") or {}).items():
        share = info["egress_bytes"] / total if total else 0.0
        by_class[cls] = monthly_cost(daily * share, cls, config.prices, days)["usd"]
    return {"daily_bytes": daily, "days": days, "link_class": "mix", "by_class": by_class,
            "usd": sum(by_class.values())}


# ---------------------------------------------------------------- links


def link_class(link_name: str, preset: Optional[str] = None,
               config: Optional[CostConfig] = None) -> str:
    """The class of a link: a rule for its name, else for its preset, else the default."""
    config = config or parse_config()
    for key in (link_name, preset):
        if key is not None and key in config.link_classes:
            return config.link_classes[key]
    return config.default_class


def preset_of(link_value: Any) -> Optional[str]:
    """The preset a link description names: ``"vpn-tunnel"`` or ``{preset: vpn-tunnel, ...}``."""
    if isinstance(link_value, str):
        return link_value
    if isinstance(link_value, Mapping) and isinstance(link_value.get("preset"), str):
        return link_value["preset"]
    return None


def link_presets(topology: str, params: Mapping[str, object],
                 links: Optional[Mapping[str, Any]] = None) -> Dict[str, Optional[str]]:
    """Link name -> the preset it uses: the scenario's ``links`` entry, else the topology's default.

    Builds the topology description only (no kernel). A link given bare
    fields without a preset keeps the topology's default preset, as the lab
    plan does.
    """
    from testbed.topologies import build_topology  # mininet import only when needed

    links = links or {}
    out: Dict[str, Optional[str]] = {}
    topo = build_topology(topology, params)
    for a, b, info in topo.links(sort=True, withInfo=True):
        name = info.get("link", f"{a}-{b}")
        default = info.get("profile") if isinstance(info.get("profile"), str) else None
        given = preset_of(links[name]) if name in links else None
        out.setdefault(name, given or default)
    for name, value in links.items():
        out.setdefault(name, preset_of(value))
    return out


def _is_egress(sender_site: Optional[str], receiver_site: Optional[str],
               carrier_sites: Iterable[str]) -> bool:
    if sender_site in carrier_sites:
        return False
    if sender_site is None or receiver_site is None:
        return True  # cannot tell: the link's class prices it (intra-site is free)
    return sender_site != receiver_site


def egress_bytes(link_counters: Mapping[Any, Mapping[str, Any]],
                 carrier_sites: Iterable[str] = CARRIER_SITES) -> Dict[Any, dict]:
    """Per link of :func:`testbed.lab.counters.link_bytes`: the directions that are egress.

    A direction counts when its sender's site differs from the receiver's and
    the sender is no carrier site; with a site unknown it counts. Links with
    no counted direction are left out. Returns ``{key: {"egress_bytes",
    "a_to_b_counted", "b_to_a_counted"}}``.
    """
    carriers = tuple(carrier_sites)
    out: Dict[Any, dict] = {}
    for key, link in link_counters.items():
        a_site, b_site = link.get("a_site"), link.get("b_site")
        forward = _is_egress(a_site, b_site, carriers)
        reverse = _is_egress(b_site, a_site, carriers)
        if not (forward or reverse):
            continue
        size = (link["a_to_b_bytes"] if forward else 0) + (link["b_to_a_bytes"] if reverse else 0)
        out[key] = {"egress_bytes": size, "a_to_b_counted": forward, "b_to_a_counted": reverse}
    return out


def _labels(link_counters: Mapping[Any, Mapping[str, Any]]) -> Dict[Any, str]:
    """Readable unique names: ``direct[cw-r1-gcp-r1]`` (``#<id>`` added on a clash)."""
    labels = {key: f"{l['name']}[{l['a']}-{l['b']}]" for key, l in link_counters.items()}
    counts: Dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {key: label if counts[label] == 1 else f"{label}#{key}" for key, label in labels.items()}


def traffic_cost(link_counters: Mapping[Any, Mapping[str, Any]],
                 presets: Optional[Mapping[str, Optional[str]]] = None,
                 config: Optional[CostConfig] = None) -> dict:
    """Price a run: counters (usually a :func:`~testbed.lab.counters.delta`) -> cost document.

    ``presets`` maps link name -> preset (:func:`link_presets`). Returns the
    :func:`scenario_cost` document, with each link's endpoints, both
    directions' bytes and which of them were counted added, plus
    ``"currency": "USD"``.
    """
    config = config or parse_config()
    presets = presets or {}
    counted = egress_bytes(link_counters, config.carrier_sites)
    labels = _labels(link_counters)
    bytes_by_link = {labels[k]: v["egress_bytes"] for k, v in counted.items()}
    class_by_link = {labels[k]: link_class(link_counters[k]["name"],
                                           presets.get(link_counters[k]["name"]), config)
                     for k in counted}
    doc = scenario_cost(bytes_by_link, class_by_link, config.prices)
    for key, info in counted.items():
        link = link_counters[key]
        doc["links"][labels[key]].update({
            "link": link["name"], "a": link["a"], "b": link["b"],
            "a_to_b_bytes": link["a_to_b_bytes"], "b_to_a_bytes": link["b_to_a_bytes"],
            "a_to_b_counted": info["a_to_b_counted"], "b_to_a_counted": info["b_to_a_counted"],
        })
    doc["currency"] = "USD"
    return doc
