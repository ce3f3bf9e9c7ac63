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
from pathlib import Path
from typing import Annotated, Any, Literal, Collection, Dict, Iterable, List, Optional, Sequence, Tuple, Type, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    create_model,
    model_validator,
)

from testbed.errors import InputError
from testbed.fields import (
    DottedKey, Name, ParamKey, Plain, StrictModel, SysctlKey, SysctlValue, TopologyName, flatten_sysctls)
from testbed.overrides import apply_overrides, set_dotted
from testbed.presets import load_presets
from testbed.profile import resolve_link
from testbed.scale import MAX_SCALE
from testbed.steps.registry import STEP_OPTIONS
from testbed.topologies import canonical_topology, is_topology_file
from testbed.units import parse_size_bytes
from testbed.yamltext import load_yaml

__all__ = [
    "Scenario",
    "Variant",
    "Endpoints",
    "Measure",
    "FidelityOptions",
    "STEP_OPTIONS",
    "load_scenario",
    "parse_scenario",
    "list_scenarios",
    "read_yaml",
    "validation_error",
]


class _MeasureBase(StrictModel):
    """The ordered measurement steps; a kind left out is not run."""

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


#: ``measure:``: one optional field per registered step kind (testbed.steps.registry)
Measure = create_model(
    "Measure", __base__=_MeasureBase, __module__=__name__,
    **{kind: (Optional[model], None) for kind, model in STEP_OPTIONS.items()},
)
Measure.__doc__ = _MeasureBase.__doc__


# ------------------------------------------------------------ the scenario


class Endpoints(StrictModel):
    """The two hosts the measurements run between (names from the topology)."""

    src: Name
    dst: Name


class FidelityOptions(StrictModel):
    """How far a measurement may stray from what the links were configured to do."""

    rtt_tolerance_pct: float = Field(10.0, gt=0, le=1000.0)
    throughput_tolerance_pct: float = Field(15.0, gt=0, le=1000.0)
    jitter_tolerance_pct: float = Field(30.0, gt=0, le=1000.0)


class Variant(StrictModel):
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


class Scenario(StrictModel):
    """A validated scenario; build it with :func:`load_scenario`."""

    name: Name
    description: StrictStr = ""
    topology: TopologyName
    params: Dict[ParamKey, Plain] = Field(default_factory=dict)
    links: Dict[Name, Plain] = Field(default_factory=dict)
    host_sysctls: Annotated[Dict[SysctlKey, SysctlValue], BeforeValidator(flatten_sysctls)] = Field(
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
    # labs across machines (testbed.cluster): name -> "user@host" or {address, user, key, python, port};
    # site -> machine. placement without machines: one-box stand-ins of those names
    machines: Dict[StrictStr, Plain] = Field(default_factory=dict)
    placement: Dict[StrictStr, StrictStr] = Field(default_factory=dict)

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


def validation_error(exc: ValidationError, source: Optional[str], prefix: Tuple[Any, ...] = ()) -> InputError:
    """The first error of ``exc`` as an InputError naming the dotted field, worded as for a scenario.

    ``prefix`` is where the validated model sits in a scenario (``("measure", "tcp")``):
    fields are named from the scenario's top and unknown keys get a did-you-mean.
    """
    errors = [{**error, "loc": tuple(prefix) + tuple(error.get("loc", ()))} for error in exc.errors()]
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
    if topologies is not None and scenario.topology not in topologies and not is_topology_file(scenario.topology):
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
    _check_machines(scenario, source)


def _check_machines(scenario: Scenario, source: Optional[str]) -> None:
    """``machines:`` parsed; ``placement:`` names known machines (or valid stand-in names)."""
    from testbed.cluster.machines import check_machine_name, parse_machines

    try:
        names = [m.name for m in parse_machines(scenario.machines)]
        for site, machine in scenario.placement.items():
            check_machine_name(machine, f"placement.{site}")
            if names and machine not in names:
                raise InputError(f"placement.{site}", f"no machine {machine!r} (machines: {', '.join(names)})")
    except InputError as exc:
        raise InputError(exc.field, exc.message, source=source) from exc
    if scenario.machines or scenario.placement:
        for index in range(len(scenario.variants)):
            for kind, _options in scenario.steps(index):
                if kind in LOCAL_ONLY_STEPS:
                    raise InputError(f"measure.{kind}", f"the {kind} step works inside namespaces from this "
                                     "process and cannot run across machines (docs/scale-out.md#limits): "
                                     "use ping, path, tcp, udp, steady", source=source)


#: steps that open sockets or netlink inside the lab's namespaces from the runner's own
#: process (or rely on its environment): they need every node on this machine
LOCAL_ONLY_STEPS = ("collective", "training", "storage", "owd", "timeline")


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


def _topology_from(data: Any, source: Optional[str]) -> Any:
    """A topology file named relative to the scenario file is taken from the scenario's folder."""
    topology = data.get("topology") if isinstance(data, dict) else None
    if not isinstance(topology, str) or not is_topology_file(topology) or source is None:
        return data
    return {**data, "topology": canonical_topology(topology, Path(source).resolve().parent)}


def parse_scenario(
    data: Any,
    source: Optional[str] = None,
    topologies: Optional[Collection[str]] = None,
    presets: Any = None,
) -> Scenario:
    """Validate an already-parsed scenario document (a dict)."""
    if not isinstance(data, dict):
        raise InputError("<top>", "a scenario must be a YAML mapping", source=source)
    data = _topology_from(data, source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, source) from exc
    _check_cross_fields(scenario, topologies, source)
    for index, variant in enumerate(scenario.variants):
        try:
            timeline = scenario.variant_measure(index).timeline
        except ValidationError as exc:
            err = validation_error(exc, source)
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
