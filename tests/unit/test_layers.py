"""The package's layers, read from its imports: arrows only point down.

Every module of `ollamatopo` belongs to a layer package (or is one of the shared modules at
the top: the error hierarchy and the text escaping). A layer imports only the layers below
it, in any import statement, at the top of a module or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ollamatopo"
SHARED = {"_errors", "_printable"}
# What each layer may import, besides itself and the shared modules.
BELOW: dict[str, set[str]] = {
    "plan": set(),
    "report": {"plan"},
    "engine": {"plan"},
    "run": {"engine", "plan", "report"},
    "app": {"run", "engine", "plan", "report"},
    "daemon": {"app", "run", "engine", "plan", "report"},
    "cli": {"daemon", "app", "plan", "report"},
}


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_layers(path: Path) -> set[tuple[str, int]]:
    """The ollamatopo layers (or shared modules) that `path` imports, with the line."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "ollamatopo" else [
                f"ollamatopo.{alias.name}" for alias in node.names
                if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").exists()]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ollamatopo" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer_or_shared() -> None:
    loose = [p.name for p in MODULES if p.parent == PACKAGE
             and p.stem not in SHARED | {"__init__", "__main__"}]
    assert loose == [], "modules outside the layer packages"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} \
        == set(BELOW)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_point_down(path: Path) -> None:
    layer = layer_of(path)
    if layer in SHARED:
        allowed = SHARED
    elif layer in ("__init__", "__main__"):
        return  # the package's public surface and the process entry point
    else:
        allowed = BELOW[layer] | SHARED | {layer}
    wrong = sorted((target, line) for target, line in imported_layers(path)
                   if target not in allowed)
    assert wrong == [], f"{layer} may import {sorted(allowed)}"
