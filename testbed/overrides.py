"""``--set key=value`` overrides on a parsed YAML document.

Used by ``testbed run --set`` (on a scenario), by a scenario's ``quick:``
section and by ``testbed up --set`` (on topology parameters). A key is a dotted
path into the document: mapping keys by name, list items by number
(``variants.1.params.transit_hops=6``). The value is parsed with
the same safe YAML loader as scenario files (:mod:`testbed.yamltext`), so ``6`` becomes an int, ``2ms`` and ``0.1%`` stay strings,
``[a, b]`` is a list and an empty value is null.

Rules, chosen to be predictable:

* The document is deep-copied; the caller's data is never changed.
* Missing mapping keys are created (``measure.path.max_hops=5`` adds a ``path``
  step); a null value on the way is replaced by an empty mapping.
* Mapping keys that contain dots themselves (``host_sysctls`` keys such as
  ``net.ipv4.tcp_rmem``) are matched whole: at each level the longest run of
  segments that names an existing key wins.
* A list index must exist (no appending, no negative indexes), and nothing can
  index into a scalar. Every failure is an :class:`InputError` naming the key.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, List, Tuple

from testbed.errors import InputError
from testbed.yamltext import load_yaml

__all__ = ["apply_overrides", "parse_override", "set_dotted"]


def parse_override(item: str, source: str = "--set") -> Tuple[str, Any]:
    """Split ``key=value`` and parse the value as YAML; return ``(key, value)``."""
    if not isinstance(item, str) or "=" not in item:
        field = item if isinstance(item, str) and item.strip() else "(empty)"
        raise InputError(field, "expected key=value", source=source)
    key, _, text = item.partition("=")
    key = key.strip()
    if not key:
        raise InputError(item, "empty key in key=value", source=source)
    value = load_yaml(text, field=key, source=source) if text.strip() else None
    return key, value


def _segments(key: str, source: str) -> List[str]:
    parts = key.split(".")
    if any(part.strip() == "" for part in parts):
        raise InputError(key, "empty segment in dotted key", source=source)
    return [part.strip() for part in parts]


def _longest_existing_key(mapping: dict, parts: List[str], start: int) -> int:
    """End index (exclusive) of the longest ``parts[start:end]`` naming a key."""
    for end in range(len(parts), start, -1):
        if ".".join(parts[start:end]) in mapping:
            return end
    return start + 1


def set_dotted(data: Any, key: str, value: Any, source: str = "--set") -> None:
    """Set ``value`` at dotted ``key`` inside ``data``, in place."""
    parts = _segments(key, source)
    node = data
    i = 0
    while True:
        if isinstance(node, dict):
            end = _longest_existing_key(node, parts, i)
            name = ".".join(parts[i:end])
            if end == len(parts):
                node[name] = value
                return
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            node, i = child, end
        elif isinstance(node, list):
            seg = parts[i]
            where = ".".join(parts[:i]) or "<top>"
            if not seg.isdigit():
                raise InputError(key, f"{where} is a list: {seg!r} is not an index", source=source)
            index = int(seg)
            if index >= len(node):
                raise InputError(
                    key, f"index {index} out of range: {where} has {len(node)} item(s)", source=source
                )
            if i + 1 == len(parts):
                node[index] = value
                return
            child = node[index]
            if child is None:
                child = node[index] = {}
            node, i = child, i + 1
        else:
            where = ".".join(parts[:i]) or "<top>"
            raise InputError(
                key, f"cannot index into {where}: it is a {type(node).__name__}, not a mapping", source=source
            )


def apply_overrides(data: dict, overrides: Iterable[str], source: str = "--set") -> dict:
    """Return a deep copy of ``data`` with each ``key=value`` override applied in order."""
    if not isinstance(data, dict):
        raise InputError("<top>", "the document must be a mapping", source=source)
    result = copy.deepcopy(data)
    for item in overrides:
        key, value = parse_override(item, source=source)
        set_dotted(result, key, value, source=source)
    return result
