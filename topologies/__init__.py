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

__all__ = ["TOPOLOGIES", "build_topology", "topology_params", "describe", "is_topology_file",
           "split_topology_file", "canonical_topology"]

_FILE_TOPOS: Dict[str, type] = {}  # "ABSOLUTE/path.py:name" -> Topo class, loaded once


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


def canonical_topology(name: str, base_dir=None) -> str:
    """A shipped name as it is; a topology file with its path made absolute (from ``base_dir``)."""
    if not is_topology_file(name):
        return name
    from pathlib import Path

    path_text, topo = split_topology_file(name)
    path = Path(path_text)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return str(path.resolve()) + (f":{topo}" if topo else "")


def is_topology_file(name: str) -> bool:
    """True for an out-of-tree topology: ``path/to/mytopo.py`` or ``path/to/mytopo.py:name``."""
    return name.endswith(".py") or ".py:" in name


def split_topology_file(name: str):
    """(path, topo name or None) of ``path/to/mytopo.py[:name]``."""
    if name.endswith(".py"):
        return name, None
    path, _, topo = name.rpartition(".py:")
    return path + ".py", topo


def _load_file(name: str, field: str) -> type:
    """The Topo class of a custom topology file, as ``mn --custom FILE --topo NAME`` loads it.

    The file is Python that runs with our privileges, exactly like Mininet's
    ``--custom``: only give files you trust. It must define a ``topos`` dict.
    """
    import hashlib
    import importlib.util
    from pathlib import Path

    path_text, topo = split_topology_file(name)
    path = Path(path_text).resolve()
    key = f"{path}:{topo or ''}"
    if key in _FILE_TOPOS:
        return _FILE_TOPOS[key]
    if not path.is_file():
        raise InputError(field, f"no topology file {path_text!r}")
    module_name = "testbed_custom_topo_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error in it is bad input
        raise InputError(field, f"{path_text}: cannot load ({type(exc).__name__}: {exc})") from exc
    topos = getattr(module, "topos", None)
    if not isinstance(topos, dict) or not topos:
        raise InputError(field, f"{path_text} defines no 'topos' dict (as 'mn --custom' files do)")
    if topo is None:
        if len(topos) != 1:
            raise InputError(field, f"{path_text} defines {len(topos)} topologies: name one as "
                             f"{path_text}:NAME ({', '.join(sorted(topos))})")
        topo = next(iter(topos))
    if topo not in topos:
        raise InputError(field, f"{path_text} has no topology {topo!r} (it has: {', '.join(sorted(topos))})")
    cls = topos[topo]
    if not isinstance(cls, type):  # Mininet allows a factory function; we take its class instances
        raise InputError(field, f"{path_text}:{topo} must be a Topo class")
    sys.modules[module_name] = module  # describe() reads its docstring
    _FILE_TOPOS[key] = cls
    return cls


def _cls(name: str, field: str) -> type:
    if is_topology_file(name):
        return _load_file(name, field)
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
