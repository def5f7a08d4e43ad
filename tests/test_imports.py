# SPDX-License-Identifier: MIT
"""No import cycles in afarm: the module graph, read from the source, must be acyclic."""

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names(src: Path = SRC) -> dict[str, Path]:
    """Every module under src/afarm by dotted name; a package is named by its __init__."""
    found = {}
    for path in sorted((src / "afarm").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports anywhere in the tree (functions included), except under `if TYPE_CHECKING:`,
    which never runs."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.orelse:
            yield from _imports(child)
        return
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _imports(child)


def imported_modules(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The afarm modules that module `name` (at `path`) imports."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
            continue
        if node.level:
            package = name if is_package else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = ".".join(p for p in (package, node.module or "") if p)
        else:
            base = node.module or ""
        for alias in node.names:
            # `from afarm.x import y`: y is a submodule or a name defined in afarm.x.
            sub = f"{base}.{alias.name}"
            if sub in modules:
                found.add(sub)
            elif base in modules:
                found.add(base)
    found.discard(name)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    modules = module_names(src)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None when the graph has none (depth-first search)."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(sorted(graph.get(root, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_afarm_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, ("import cycle: " + " -> ".join(cycle or [])
                           + "; move what both need into a module below both, or invert the"
                           " dependency")


def test_the_graph_sees_the_imports_that_make_a_cycle() -> None:
    graph = import_graph()
    assert "afarm.cli.ops" in graph["afarm.cli.commands"]  # from afarm.cli import ops
    assert "afarm.cli.client" in graph["afarm.cli.ops"]  # from afarm.cli.client import Client
    assert "afarm.cli.demo" in graph["afarm.cli.commands"]  # imported inside a function
    assert len(graph) > 50


def test_imports_inside_functions_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    pkg = tmp_path / "afarm"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from afarm import b\n"
                              "else:\n    import afarm.sub.c\n"
                              "def f() -> None:\n    from .sub import d\n")
    (pkg / "b.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    import afarm.a\n")
    (pkg / "sub" / "c.py").write_text("from ..a import f\n")
    (pkg / "sub" / "d.py").write_text("from . import c\nfrom afarm.sub.c import name\n")
    graph = import_graph(tmp_path)
    assert graph["afarm.a"] == {"afarm.sub.c", "afarm.sub.d"}
    assert graph["afarm.b"] == set()
    assert graph["afarm.sub.c"] == {"afarm.a"}
    assert graph["afarm.sub.d"] == {"afarm.sub.c"}
    assert find_cycle(graph) == ["afarm.a", "afarm.sub.c", "afarm.a"]


def test_the_cycle_finder_names_a_cycle_and_passes_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None  # diamond
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": set(), "p": {"q"}, "q": {"r"}, "r": {"q"}}) == [
        "q", "r", "q"]
