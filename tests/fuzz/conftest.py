"""The fuzz tests' shell guard.

``argv_only`` (autouse) makes every ``subprocess.Popen`` in these tests
refuse ``shell=True`` and anything but an argv list: names and values from
the fuzzed input can never reach a shell.
"""

from __future__ import annotations

import subprocess

import pytest

__all__ = ["argv_only"]


@pytest.fixture(autouse=True)
def argv_only(monkeypatch):
    real_init = subprocess.Popen.__init__

    def checked_init(self, args, *rest, **kwargs):
        if kwargs.get("shell") or not isinstance(args, (list, tuple)):
            raise AssertionError(f"a command was not an argv list (or used a shell): {args!r}")
        return real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked_init)
