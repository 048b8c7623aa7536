"""Package structure: no module-level import cycles; the CLI command modules do not import
the package that imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "s2sr_cloud"


def _module_graph() -> dict[str, set[str]]:
    mods: dict[str, Path] = {}
    for p in ROOT.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    edges: dict[str, set[str]] = {}
    for name, p in mods.items():
        pkg = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.parse(p.read_text()).body:  # module level: what runs on import
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    deps.add(full if full in mods else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        edges[name] = {d for d in deps if d in mods and d != name}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_level_import_cycles() -> None:
    assert _cycles(_module_graph()) == []


def test_cli_commands_import_the_app_not_the_package() -> None:
    edges = _module_graph()
    for name, deps in edges.items():
        if name.startswith("s2sr_cloud.cli.") and name != "s2sr_cloud.cli._app":
            assert "s2sr_cloud.cli" not in deps, f"{name} imports s2sr_cloud.cli (a cycle with its __init__)"


def test_only_settings_reads_the_environment() -> None:
    readers = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                     if p.name != "settings.py" and ("os.environ" in p.read_text() or "getenv(" in p.read_text()))
    assert readers == [], f"read the environment through s2sr_cloud.settings: {readers}"
