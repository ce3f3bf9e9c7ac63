"""Named link presets shipped with the testbed.

The presets live in ``testbed/data/presets.yaml`` (package data, read with
``yaml.safe_load`` through :mod:`importlib.resources`), one mapping per preset
in the link profile's user form (tc-like strings, see :mod:`testbed.profile`),
plus an optional ``description``. Every number there carries a comment citing
its source. A preset describes ONE hop in one direction; it is applied to both
directions unless a link overrides ``forward``/``reverse``.

This module only reads the file; :func:`testbed.profile.resolve_link` turns a
preset into a validated profile, and the unit tests validate every preset.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any, Dict, List, Tuple

import yaml

from testbed.errors import InputError

__all__ = ["load_presets", "preset_names", "preset_descriptions", "PRESETS_RESOURCE"]

#: Where the presets live, relative to the ``testbed`` package.
PRESETS_RESOURCE = "data/presets.yaml"


@functools.lru_cache(maxsize=1)
def _load() -> Tuple[Dict[str, Dict[str, Any]], Dict[str, str]]:
    """Read and shape-check the presets file once: (profiles, descriptions)."""
    folder, name = PRESETS_RESOURCE.split("/")
    path = resources.files("testbed").joinpath(folder).joinpath(name)
    source = f"testbed/{PRESETS_RESOURCE}"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError("presets", f"cannot read the presets file: {exc}", source) from exc
    if not isinstance(document, dict):
        raise InputError("presets", "the presets file must be a mapping of names", source)
    profiles: Dict[str, Dict[str, Any]] = {}
    descriptions: Dict[str, str] = {}
    for preset, body in document.items():
        if not isinstance(preset, str) or not isinstance(body, dict):
            raise InputError(
                f"presets.{preset}", "a preset must be a name with a mapping of fields", source
            )
        fields = dict(body)
        description = fields.pop("description", "")
        if not isinstance(description, str):
            raise InputError(f"presets.{preset}.description", "must be a string", source)
        profiles[preset] = fields
        descriptions[preset] = " ".join(description.split())
    return profiles, descriptions


def load_presets() -> Dict[str, Dict[str, Any]]:
    """Preset name -> link profile fields in user form (a fresh copy each call)."""
    return copy.deepcopy(_load()[0])


def preset_names() -> List[str]:
    """The preset names, in file order."""
    return list(_load()[0])


def preset_descriptions() -> Dict[str, str]:
    """Preset name -> one-line description (for ``testbed list``)."""
    return dict(_load()[1])
