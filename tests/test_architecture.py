"""Dependencies point one way: only gradwidget/view imports the UI; diagnosis is numpy only."""

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


CORE = sorted(p for p in PACKAGE.rglob("*.py") if "view" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_modules_import_no_ui(path: Path) -> None:
    assert not _imports(path) & UI


def test_diagnosis_is_pure_numpy() -> None:
    allowed = STDLIB | {"numpy", "gradwidget"}
    assert _imports(PACKAGE / "diagnosis.py") <= allowed


def test_importing_the_package_loads_no_ui() -> None:
    code = (
        "import sys, gradwidget as gw; gw.Recorder; gw.diagnose; gw.train; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'ipywidgets', 'bqplot'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
