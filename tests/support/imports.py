"""The ``hotcrm`` package's import graph, read from its source (nothing is imported)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "include" / "hotcrm"


@dataclass(frozen=True)
class Import:
    """One import statement of a module: what it names, where, and whether it runs at import time."""

    module: str  # the importing module
    target: str  # the module imported (``from a import b``: ``a.b`` when that is a module, else ``a``)
    line: int
    top_level: bool  # False inside a function (runs only when called)


def module_name(path: Path) -> str:
    """``include/hotcrm/api/app.py`` -> ``hotcrm.api.app`` (a package's ``__init__`` -> the package)."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of ``hotcrm`` by name (migrations included)."""
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(name: str, level: int, module: str, is_package: bool) -> str:
    if not level:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """The imports of one module, each with the line and whether it runs at import time."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"

    def walk(node: ast.AST, top_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, top_level)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(child.module or "", child.level, module, is_package)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    yield Import(module, sub if sub in known else base, child.lineno, top_level)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # typing only: never runs
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, False)
            else:
                yield from walk(child, top_level)

    yield from walk(tree, True)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def all_imports() -> list[Import]:
    """Every import statement of every ``hotcrm`` module."""
    found = modules()
    known = set(found)
    return [imp for name, path in found.items() for imp in imports_of(name, path, known)]


def import_time_graph() -> dict[str, set[str]]:
    """Module -> the ``hotcrm`` modules importing it loads at once (parent packages included:
    importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first)."""
    known = set(modules())
    graph: dict[str, set[str]] = {name: set() for name in known}
    for imp in all_imports():
        if not imp.top_level or not imp.target.startswith("hotcrm"):
            continue
        parts = imp.target.split(".")
        for end in range(1, len(parts) + 1):
            target = ".".join(parts[:end])
            if target in known and target != imp.module and not imp.module.startswith(target + "."):
                graph[imp.module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # recursion depth is bounded by the ~200 modules
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def environment_reads() -> list[tuple[str, int]]:
    """(module, line) of every ``os.environ`` / ``os.getenv`` reference in ``hotcrm``."""
    found = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                found.append((name, node.lineno))
    return found
