"""Choosing the delay backend: netem where the kernel has it, else userspace.

A registry from name to backend class (one module per backend); ``auto``
prefers netem and falls back to the userspace delay line, with the reason
recorded so ``testbed doctor`` and results can say why.
"""

from __future__ import annotations

from typing import Dict, Tuple

from testbed.errors import EnvironmentProblem, InputError

__all__ = ["BACKENDS", "check_name", "select", "explain"]


def _registry() -> Dict[str, type]:
    from testbed.shaping.netem import NetemBackend
    from testbed.shaping.userspace import UserspaceBackend

    return {"netem": NetemBackend, "userspace": UserspaceBackend}


BACKENDS = ("auto", "netem", "userspace")


def explain() -> Tuple[str, str]:
    """(backend auto would pick, why)."""
    netem_ok, netem_why = _registry()["netem"]().available()
    if netem_ok:
        return "netem", "the kernel has the netem qdisc"
    return "userspace", f"netem unavailable: {netem_why}; using the NFQUEUE delay line"


def check_name(name: str) -> str:
    if name not in BACKENDS:
        raise InputError("backend", f"unknown delay backend {name!r} (choose from {', '.join(BACKENDS)})")
    return name


def select(name: str = "auto"):
    check_name(name)
    registry = _registry()
    if name == "auto":
        name, _why = explain()
    backend = registry[name]()
    ok, why = backend.available()
    if not ok:
        raise EnvironmentProblem(
            f"delay backend {name!r} is not usable here: {why}",
            "use --set backend=auto (or userspace), see 'testbed doctor'",
        )
    return backend
