"""The modules of the formatter and the data path import each other without a circle.

Module-level imports only (an import inside a function runs when called, after both modules
loaded). Read from the source with ``ast``, so the test sees every ``from ... import`` as written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tuneloop/formats", "tuneloop/warehouse")
MODULES = ("tuneloop/datasets.py", "tuneloop/examples.py", "tuneloop/loading.py", "tuneloop/merge.py", "tuneloop/storage.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def top_level_imports(path: Path, known: set[str]) -> set[str]:
    """The known modules ``path`` imports at module level (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.If | ast.Try):
                visit(node.body + getattr(node, "orelse", []) + sum((h.body for h in getattr(node, "handlers", [])), []))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)

    visit(tree.body)
    # importing a.b.c imports the package a.b too, except a package this module is inside (Python
    # initialises the package first; its __init__ importing this module is not a circle)
    ancestors = {".".join(me.split(".")[:i]) for i in range(1, me.count(".") + 1)}
    closure = set()
    for name in found:
        parts = name.split(".")
        closure.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in closure if m in known and m != me and m not in ancestors}


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")] + [ROOT / m for m in MODULES]
    known = {module_name(p) for p in files}
    return {module_name(p): top_level_imports(p, known) for p in files}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_formatter_and_data_path_modules_have_no_import_circle():
    edges = graph()
    assert "tuneloop.formats.render" in edges and edges["tuneloop.formats.render"]  # the graph was read
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", ["tuneloop.formats.base", "tuneloop.formats.rules", "tuneloop.formats.providers"])
def test_the_interface_and_the_tables_depend_on_no_format(module):
    edges = graph()
    formats = {f"tuneloop.formats.{n}" for n in ("openai", "gemini", "bedrock", "hf", "render", "registry")}
    assert not edges[module] & formats, edges[module]
