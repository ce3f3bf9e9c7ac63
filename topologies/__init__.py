"""Shipped topologies: a registry from name to Mininet ``Topo`` class.

Each module is also a Mininet custom-topology file with its own ``topos`` dict
(``mn --custom topologies/<file>.py --topo <name>``), so the files import
nothing from ``testbed``. :func:`build_topology` validates parameters and
turns a topology's own ``ValueError`` into an :class:`InputError` naming the
field.
"""

from __future__ import annotations

import inspect
import sys
from typing import Dict, Mapping

from testbed.errors import InputError

from . import multicloud, pair, star, two_clouds

TOPOLOGIES: Dict[str, type] = {}
for _module in (pair, star, two_clouds, multicloud):
    TOPOLOGIES.update(_module.topos)

__all__ = ["TOPOLOGIES", "build_topology", "topology_params", "describe"]


def topology_params(name: str) -> Dict[str, object]:
    """Parameter names of a topology with their defaults."""
    cls = _cls(name, "topology")
    sig = inspect.signature(cls.build)
    return {
        p.name: p.default
        for p in list(sig.parameters.values())[1:]
        if p.default is not inspect.Parameter.empty
    }


def describe(name: str) -> str:
    """First line of the topology module's docstring."""
    doc = sys.modules[_cls(name, "topology").__module__].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _cls(name: str, field: str) -> type:
    try:
        return TOPOLOGIES[name]
    except KeyError:
        raise InputError(
            field, f"unknown topology {name!r} (known: {', '.join(sorted(TOPOLOGIES))})"
        ) from None


def build_topology(name: str, params: Mapping[str, object], field: str = "params"):
    """Instantiate topology ``name`` with ``params``; errors name the field."""
    cls = _cls(name, "topology")
    allowed = topology_params(name)
    for key in params:
        if key not in allowed:
            raise InputError(
                f"{field}.{key}",
                f"topology {name!r} has no parameter {key!r}"
                + (f" (parameters: {', '.join(allowed)})" if allowed else " (it takes none)"),
            )
    try:
        return cls(**dict(params))
    except (ValueError, TypeError) as exc:
        message = str(exc)
        key = next((k for k in allowed if message.startswith(k)), None)
        raise InputError(f"{field}.{key}" if key else field, message) from exc
