"""The package's import structure, read from the source: no import cycles between modules, no
private (underscore) name imported from another module (ARCHITECTURE.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import distilens

ROOT = Path(distilens.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("distilens", *path.relative_to(ROOT).with_suffix("").parts))
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Module → modules it imports (within the package), and ``module<-source.name`` for private names."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    edges[mod].add(full if full in mods else target)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and target in mods and target != mod:
                        private.append(f"{mod}<-{target}.{alias.name}")
            elif isinstance(node, ast.Import):
                edges[mod].update(a.name for a in node.names if a.name in mods)
        edges[mod] &= set(mods) - {mod}
    return edges, private


def _cycles(edges: dict[str, set[str]], mods: dict[str, Path]) -> list[list[str]]:
    """Strongly connected groups of two or more plain modules (a package re-exporting its own modules is not one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if sum(mods[m].name != "__init__.py" for m in group) > 1:
                groups.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles_and_no_private_names_across_modules() -> None:
    mods = _modules()
    edges, private = _imports(mods)
    assert _cycles(edges, mods) == []
    assert private == []


def test_the_check_finds_a_planted_cycle() -> None:
    mods = {"p.a": Path("a.py"), "p.b": Path("b.py"), "p": Path("__init__.py")}
    assert _cycles({"p.a": {"p.b"}, "p.b": {"p.a"}, "p": {"p.a"}}, mods) == [["p.a", "p.b"]]
    assert _cycles({"p.a": {"p.b"}, "p.b": set(), "p": {"p.a"}}, mods) == []
