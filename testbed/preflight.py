"""Checks a scenario must pass before ``testbed run`` touches the machine.

A scenario file validates on its own (:mod:`testbed.scenario`), but whether its
parameters, endpoints and link names fit its topology is only known once the
topology is built, and whether the tools its steps need are installed is only
known on this machine. Both are checked here, for every variant, before any
lab exists:

* input that does not fit the topology is an :class:`InputError` (exit 2)
  naming the field: an unknown parameter, an endpoint that is not a host, a
  link profile that names no link (a typo must never leave a link unshaped);
* a missing tool is an :class:`EnvironmentProblem` (exit 3) with a fix hint.

Building a topology here is cheap: a Mininet ``Topo`` is a plain graph.
"""

from __future__ import annotations

from typing import Dict, List, Set

from testbed.errors import InputError
from testbed.scenario import Scenario
from testbed.steps.registry import STEPS
from testbed.topologies import build_topology

__all__ = ["check_topology_fit", "check_tools", "preflight"]


def _link_names(topo) -> Set[str]:
    names = set()
    for a, b, info in topo.links(sort=True, withInfo=True):
        names.add(info.get("link", f"{info.get('node1', a)}-{info.get('node2', b)}"))
    return names


def _hosts(topo) -> List[str]:
    return [name for name in topo.nodes(sort=True) if not topo.isSwitch(name)
            and topo.nodeInfo(name).get("role", "host") == "host"]


def check_topology_fit(scenario: Scenario) -> None:
    """Parameters, endpoints and link names of every variant against its topology."""
    source = scenario._source
    links_anywhere: Set[str] = set()
    hosts_by_variant: Dict[int, List[str]] = {}
    for index, variant in enumerate(scenario.variants):
        config = scenario.variant_config(index)
        params = config["params"]
        try:
            topo = build_topology(scenario.topology, params)
        except InputError as exc:
            field = exc.field
            if field.startswith("params.") and field[len("params."):] in params:
                field = scenario.param_field(index, field[len("params."):])
            raise InputError(field, exc.message, source=source) from exc
        names = _link_names(topo)
        links_anywhere |= names
        for name in variant.links:
            if name not in names:
                raise InputError(f"variants.{index}.links.{name}", _no_link(scenario, name, names),
                                 source=source)
        hosts_by_variant[index] = _hosts(topo)
        _check_timeline_events(scenario, index, topo, config)
    for name in scenario.links:
        if name not in links_anywhere:
            raise InputError(f"links.{name}", _no_link(scenario, name, links_anywhere), source=source)
    if scenario.endpoints is not None:
        for end in ("src", "dst"):
            host = getattr(scenario.endpoints, end)
            for index, hosts in hosts_by_variant.items():
                if host not in hosts:
                    where = "" if len(scenario.variants) == 1 else f" in variant {scenario.variants[index].name!r}"
                    shown = ", ".join(hosts[:8]) + (", ..." if len(hosts) > 8 else "")
                    raise InputError(f"endpoints.{end}",
                                     f"{host!r} is not a host of {scenario.topology}{where} (hosts: {shown})",
                                     source=source)


def _check_timeline_events(scenario: Scenario, index: int, topo, config: dict) -> None:
    """Events name links of this variant's topology and can be applied at runtime."""
    timeline = scenario.variant_measure(index).timeline
    if timeline is None or not timeline.events:
        return
    from testbed.events.model import check_events
    from testbed.lab.plan import make_plan

    field = scenario.events_field(index)
    plan = make_plan(topo, "preflight", "10.0.0.0/8", config["links"], strict_links=False)
    try:
        check_events(timeline.parsed_events(field), plan, duration_s=timeline.duration_s, field=field)
    except InputError as exc:
        where = "" if len(scenario.variants) == 1 else f" (variant {scenario.variants[index].name!r})"
        raise InputError(exc.field, exc.message + where, source=scenario._source) from exc


def _no_link(scenario: Scenario, name: str, names: Set[str]) -> str:
    return (f"topology {scenario.topology!r} has no link named {name!r} "
            f"(links: {', '.join(sorted(names))})")


def check_tools(scenario: Scenario) -> None:
    """Every step's tools are installed (exit 3 with a fix hint otherwise)."""
    kinds = {kind for index in range(len(scenario.variants)) for kind, _ in scenario.steps(index)}
    for kind in sorted(kinds):
        if STEPS[kind].check_tools is not None:
            STEPS[kind].check_tools()


def preflight(scenario: Scenario) -> None:
    """All checks, input first (exit 2 outranks exit 3)."""
    check_topology_fit(scenario)
    check_tools(scenario)
