"""Dependencies point one way: only gradwidget/view imports the UI; diagnosis is numpy only;
the core imports neither the view nor the integrations; integrations load the view lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gradwidget"
UI = {"ipywidgets", "bqplot", "IPython", "traitlets"}
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    """Top-level names of every module imported by a file (relative imports as 'gradwidget')."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("gradwidget" if node.level else (node.module or "").split(".")[0])
    return names


def _modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Full dotted names a file imports (relative imports resolved), optionally only those
    at module level (not inside a function, where an import runs only when called)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _within(names: set[str], *packages: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in packages)}


def _parts(path: Path) -> tuple[str, ...]:
    return path.relative_to(PACKAGE).parts


CORE = sorted(p for p in PACKAGE.rglob("*.py") if not {"view", "integrations"} & set(_parts(p)))
INTEGRATIONS = sorted((PACKAGE / "integrations").rglob("*.py"))


@pytest.mark.parametrize("path", CORE + INTEGRATIONS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_modules_import_no_ui(path: Path) -> None:
    # Integrations: at module level; a callback shows its panel through a lazy import.
    imported = _modules(path, top_level_only=path in INTEGRATIONS)
    assert not {name.split(".")[0] for name in imported} & UI


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_neither_view_nor_integrations(path: Path) -> None:
    # The package's __init__ alone loads the view, lazily, for gw.GradPanel / gw.watch.
    top_level = path == PACKAGE / "__init__.py"
    imported = _modules(path, top_level)
    assert not _within(imported, "gradwidget.view", "gradwidget.integrations")


@pytest.mark.parametrize("path", INTEGRATIONS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_integrations_load_the_view_only_lazily(path: Path) -> None:
    assert not _within(_modules(path, top_level_only=True), "gradwidget.view")


@pytest.mark.parametrize("name", sorted(p.name for p in (PACKAGE / "diagnose").glob("*.py")))
def test_diagnosis_is_pure_numpy(name: str) -> None:
    allowed = STDLIB | {"numpy", "gradwidget"}
    assert _imports(PACKAGE / "diagnose" / name) <= allowed


def test_importing_the_package_loads_no_ui() -> None:
    code = (
        "import sys, gradwidget as gw; gw.Recorder; gw.diagnose; gw.train; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'ipywidgets', 'bqplot'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
