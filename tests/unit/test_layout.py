"""The package's layout holds: no import circles, no private names used across modules.

Oracle: the source itself, read with :mod:`ast` (nothing is imported). Every
``import`` counts, function-level ones too, and importing ``a.b.c`` also
counts as importing its parent packages (Python runs their ``__init__``
first), so a circle through a package's ``__init__`` is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import testbed

ROOT = Path(testbed.__file__).resolve().parent


def _modules() -> Dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> List[Tuple[str, str]]:
    """(imported module, name taken from it or "") for every import in ``module``."""
    path = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node, path.name == "__init__.py")
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    out.append((f"{source}.{alias.name}", ""))  # a submodule
                else:
                    out.append((source, alias.name))
    return out


def _with_parents(name: str) -> Set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def _graph() -> Dict[str, Set[str]]:
    graph = {}
    for module in MODULES:
        edges: Set[str] = set()
        for target, _name in _imports(module):
            edges |= _with_parents(target)
        graph[module] = edges - {module} - _with_parents(module)  # a module's own parents run first
    return graph


def _circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_module_list_is_the_package():
    assert "testbed.steps.registry" in MODULES and "testbed.report.document" in MODULES
    assert len(MODULES) > 100


def test_no_import_circles_among_testbed_modules():
    circles = _circles(_graph())
    assert circles == [], f"import circles: {circles}"


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _compiled_submodule(package: str, name: str) -> bool:
    directory = ROOT.parent.joinpath(*package.split("."))
    return (directory / f"{name}.c").is_file() or any(directory.glob(f"{name}.*.so"))


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for module in MODULES:
        for source, name in _imports(module):
            if not source.startswith("testbed") or not name:
                continue
            if _compiled_submodule(source, name) and module.rsplit(".", 1)[0] == source:
                continue  # a package's own C extension (testbed.delayline._fastline), used by a sibling
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                bad.append(f"{module}: from {source} import {name}")
    assert bad == []


def test_no_private_attribute_of_another_testbed_module_is_used():
    """``from testbed import fidelity; fidelity._profile(...)`` counts too."""
    bad = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(module, node, path.name == "__init__.py")
                for alias in node.names:
                    if f"{source}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{module}: {node.value.id}.{node.attr}")
    assert bad == []


def test_test_modules_have_unique_basenames():
    """pytest imports test modules by basename (no __init__.py): two with one name stop collection."""
    tests = Path(__file__).resolve().parents[1]
    names: Dict[str, List[str]] = {}
    for path in tests.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
