"""Safe YAML for user input: scenario files and ``--set`` values.

``yaml.SafeLoader`` keeps code out, but not every hostile document:

* deeply nested flow collections (``[[[[...]]]]``) make PyYAML's recursive
  composer raise ``RecursionError``;
* an explicit tag with a bad value (``!!int zz``, ``!!timestamp 2001-13-45``)
  raises ``ValueError``/``KeyError`` from the constructor, not ``YAMLError``;
* an alias can point at its own collection (``&a [*a]``), a cycle that any
  later walk follows forever;
* nested aliases ("billion laughs") expand a 2 KB file into 9**9 nodes.

:func:`load_yaml` refuses all of these as :class:`InputError` (exit 2): nesting
is capped while composing, constructor errors are translated, and the loaded
value is walked once, iteratively, with a cycle check and a budget on the
number of values an expansion would visit.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import yaml

from testbed.errors import InputError

__all__ = ["load_yaml", "MAX_DEPTH", "MAX_VALUES"]

MAX_DEPTH = 64  # nesting levels of collections; scenarios use fewer than 10
MAX_VALUES = 200_000  # scalars + collections after alias expansion


class _BoundedSafeLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys and deep nesting."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D401 - PyYAML hook
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable key: let construct_mapping report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=deep)


_BoundedSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _check_shape(value: Any, field: str, source: Optional[str]) -> None:
    """Refuse cycles and alias expansions above :data:`MAX_VALUES`, iteratively."""
    visited = 0
    # (value, ids of the collections above it, dotted path)
    stack: List[Tuple[Any, frozenset, str]] = [(value, frozenset(), "")]
    while stack:
        item, above, path = stack.pop()
        visited += 1
        if visited > MAX_VALUES:
            raise InputError(field, f"document expands to more than {MAX_VALUES} values (nested aliases?)",
                             source=source)
        if isinstance(item, dict):
            children = [(str(key), child) for key, child in item.items()]
        elif isinstance(item, list):
            children = [(str(i), child) for i, child in enumerate(item)]
        else:
            continue
        if id(item) in above:
            raise InputError(field, f"alias refers to itself at {path or '<top>'} (a cyclic document)",
                             source=source)
        inner = above | {id(item)}
        for name, child in children:
            stack.append((child, inner, f"{path}.{name}" if path else name))


def load_yaml(text: str, field: str = "yaml", source: Optional[str] = None) -> Any:
    """Parse ``text`` as safe YAML; every failure is an :class:`InputError` on ``field``.

    For a syntax error the field becomes ``line L column C`` when ``field`` is
    the default ``"yaml"`` (a whole file); otherwise ``field`` is kept and the
    position goes into the message (a ``--set`` value).
    """
    try:
        value = yaml.load(text, Loader=_BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if field == "yaml" and where:
            raise InputError(where, f"invalid YAML: {problem}", source=source) from exc
        raise InputError(field, f"value is not valid YAML: {problem}" + (f" ({where})" if where else ""),
                         source=source) from exc
    except yaml.YAMLError as exc:
        raise InputError(field, f"invalid YAML: {str(exc).splitlines()[0]}", source=source) from exc
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        # a constructor given an explicit tag it cannot build: !!int zz, !!bool maybe
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(field, f"invalid YAML value: {detail[:120]}", source=source) from exc
    except RecursionError as exc:  # belt and braces: MAX_DEPTH should stop it first
        raise InputError(field, "invalid YAML: nested too deeply", source=source) from exc
    _check_shape(value, field, source)
    return value
