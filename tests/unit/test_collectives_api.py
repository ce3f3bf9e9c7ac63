"""The collectives package's public surface: every ``__all__`` name exists, and
importing the pure parts does not pull in the network engine."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "testbed.collectives",
    "testbed.collectives.ops",
    "testbed.collectives.schedule",
    "testbed.collectives.algorithms",
    "testbed.collectives.algorithms.ring",
    "testbed.collectives.algorithms.tree",
    "testbed.collectives.algorithms.rabenseifner",
    "testbed.collectives.algorithms.hierarchical",
    "testbed.collectives.order",
    "testbed.collectives.reference",
    "testbed.collectives.races",
    "testbed.collectives.model",
    "testbed.collectives.simulate",
    "testbed.collectives.table",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name):
    module = importlib.import_module(name)
    assert module.__doc__ and module.__doc__.strip()
    exported = getattr(module, "__all__")
    assert len(exported) == len(set(exported))
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists missing names {missing}"


def test_pure_parts_import_without_the_network_engine():
    code = ("import sys, testbed.collectives, testbed.collectives.model; "
            "print(sorted(m for m in sys.modules if m.endswith(('engine', 'transport', "
            "'nssocket'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
