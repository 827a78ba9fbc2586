"""No import cycle inside ``athena/``: the layers only import downwards.

Every import counts, module-level or inside a function (a function-local import is how a cycle
is usually hidden); only imports under ``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import athena

ROOT = Path(athena.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, path: Path) -> set[str]:
    """Every module name ``path`` may import at run time (with ``from x import y``: x and x.y)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported(name, path):
            parts = imported.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()  # `from athena.x import SomeClass` → athena.x
            target = ".".join(parts)
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_inside_athena() -> None:
    graph = _graph()
    assert "athena.services.gateway.postgres" in graph  # the walk found the tree
    cycles = _cycles(graph)
    detail = [" → ".join(f"{m} (imports {sorted(graph[m] & set(c))})" for m in c) for c in cycles]
    assert cycles == [], "\n".join(detail)


def test_http_imports_routes_only_to_register_them() -> None:
    """``athena.http`` serves what ``athena.routes`` defines; only the Quart app, which
    registers the blueprints, imports it. What the hot lane shares with a route lives in
    ``athena.http`` or ``athena.services``, so the lane never depends on a Quart view."""
    graph = _graph()
    into_routes = {
        module: sorted(t for t in targets if t == "athena.routes" or t.startswith("athena.routes."))
        for module, targets in graph.items()
        if module == "athena.http" or module.startswith("athena.http.")
    }
    importers = {m: t for m, t in into_routes.items() if t}
    assert sorted(importers) == ["athena.http.app"]
    # …and what it imports of them is the route modules it registers, nothing else.
    from athena.http.app import ROUTE_MODULES

    registered = {module.__name__ for module in ROUTE_MODULES}
    assert set(importers["athena.http.app"]) - {"athena.routes"} == registered
