"""Imports flow one way (ARCHITECTURE.md): deployments -> flows -> tasks -> storage ->
dsan_core, and no two of dsan_core's modules and subpackages import each other, directly
or round a longer loop. Every import statement counts, also one inside a function or
under TYPE_CHECKING: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Each package, with the packages it may import (the layers below it).
LAYERS = {"deployments": {"flows", "tasks", "storage", "dsan_core"},
          "flows": {"tasks", "storage", "dsan_core"},
          "tasks": {"storage", "dsan_core"},
          "storage": {"dsan_core"},
          "dsan_core": set()}


def _imports(path: Path) -> Iterator[str]:
    """The absolute module names `path` imports (for `from a import b`: a, and a.b)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _unit(module: str) -> str | None:
    """The graph node of a module: its package, or for dsan_core its first-level module
    or subpackage; None outside the project."""
    parts = module.split(".")
    if parts[0] not in LAYERS:
        return None
    return ".".join(parts[:2]) if parts[0] == "dsan_core" and len(parts) > 1 else parts[0]


def import_graph() -> dict[str, dict[str, str]]:
    """node -> {imported node: a file that imports it}."""
    graph: dict[str, dict[str, str]] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            source = _unit(module)
            assert source is not None
            for name in _imports(path):
                target = _unit(name)
                if target is None or target == source or target == "dsan_core":
                    continue  # `from dsan_core import x` counts as dsan_core.x
                graph.setdefault(source, {}).setdefault(target, str(relative))
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_packages_import_only_the_layers_below_them() -> None:
    wrong = [f"{source} -> {target} ({where})"
             for source, targets in import_graph().items()
             for target, where in targets.items()
             if target.split(".")[0] not in LAYERS[source.split(".")[0]]
             and target.split(".")[0] != source.split(".")[0]]
    assert not wrong


def test_the_science_and_storage_do_not_import_prefect() -> None:
    found = [str(path.relative_to(ROOT)) for package in ("dsan_core", "storage")
             for path in sorted((ROOT / package).rglob("*.py"))
             if any(name.split(".")[0] == "prefect" for name in _imports(path))]
    assert not found


def test_no_import_cycle_between_packages_or_dsan_core_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    details = [" / ".join(f"{a} -> {b} ({graph[a][b]})" for a in component
                          for b in component if b in graph.get(a, {}))
               for component in found]
    assert not found, details


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b": "x"}, "b": {"c": "y"}, "c": {"a": "z"}, "d": {"a": "w"}}) == [
        ["a", "b", "c"]]
