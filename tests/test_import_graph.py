"""The package's import graph has no cycles, and every import made inside a
function says why on its line (start-up cost, an optional dependency...).

The graph is read from the source with ``ast``: module-level imports and
imports inside functions both count; imports only for the type checker
(under ``if TYPE_CHECKING:``) do not, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import tracedsync

SOURCE = Path(tracedsync.__file__).parent
PACKAGE = "tracedsync"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import that runs, and whether it is inside a function."""

    def visit(
        node: ast.AST, in_function: bool
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from visit(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from visit(child, inner)

    yield from visit(tree, False)


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]
) -> set[str]:
    """The package's modules an import statement loads.

    ``from tracedsync import _hooks`` loads the submodule ``_hooks``;
    ``from tracedsync import Lock`` (or ``import tracedsync``) loads the
    package's facade, ``tracedsync/__init__``.  The parent packages of a
    module load before it and count too, except those the importing module
    is itself in: they are loading already, so they are an edge only when a
    name is taken from them."""
    if isinstance(node, ast.Import):
        sources = [alias.name for alias in node.names]
        names: list[str] = []
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            sources = [".".join([*base, node.module] if node.module else base)]
        else:
            sources = [node.module or ""]
        names = [alias.name for alias in node.names]
    # The packages the importing module is in are loading already.
    parts = module.split(".")
    loading = {".".join(parts[:end]) for end in range(1, len(parts) + (1 if is_package else 0))}
    found: set[str] = set()
    for source in sources:
        if source.split(".")[0] != PACKAGE:
            continue
        pieces = source.split(".")
        for end in range(1, len(pieces)):
            parent = ".".join(pieces[:end])
            if parent not in loading:
                found.add(parent)
        whole = not names
        for name in names:
            if f"{source}.{name}" in known:
                found.add(f"{source}.{name}")
            else:
                whole = True  # a name defined by the module (or package) itself
        if whole or source not in loading:
            found.add(source)
    return found & known


def _explained(lines: list[str], node: ast.stmt) -> bool:
    """A comment on the import's line, or a comment line just above it (or
    above the run of imports it is in)."""
    last = node.end_lineno or node.lineno
    if any("#" in line for line in lines[node.lineno - 1 : last]):
        return True
    above = node.lineno - 2
    while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    unexplained: list[str] = []
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node, in_function in _imports(ast.parse(text)):
            targets = _targets(node, name, path.name == "__init__.py", known)
            graph[name] |= targets - {name}
            if in_function and not _explained(lines, node):
                unexplained.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    return graph, unexplained


WHITE, GREY, BLACK = 0, 1, 2


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, if it has one (iterative depth-first search)."""
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            for child in children:
                if colour[child] == GREY:
                    path = [entry[0] for entry in stack]
                    return [*path[path.index(child) :], child]
                if colour[child] == WHITE:
                    colour[child] = GREY
                    stack.append((child, iter(sorted(graph[child]))))
                    break
            else:
                colour[node] = BLACK
                stack.pop()
    return None


def test_the_scan_sees_the_package() -> None:
    graph, _ = _graph()
    assert "tracedsync._lock" in graph
    assert "tracedsync._hooks" in graph["tracedsync._lock"]
    assert "tracedsync._races.detector" in graph


def test_no_import_cycles() -> None:
    graph, _ = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_import_inside_a_function_says_why() -> None:
    _, unexplained = _graph()
    assert unexplained == [], unexplained
