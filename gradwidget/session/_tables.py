"""A session's runs as tables and files: comparison rows, histories on disk, settings in words."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..history import History
from .summary import COLUMNS, RunSummary

__all__ = ["frame", "settings_rows", "versions", "write"]

_PACKAGES = ("torch", "ipywidgets", "bqplot")


def frame(rows: Sequence[RunSummary]) -> Any:
    """The rows as a pandas DataFrame (pandas is imported only here)."""
    import pandas as pd

    return pd.DataFrame([asdict(row) for row in rows], columns=list(COLUMNS))


def write(
    path: str | Path, histories: Mapping[str, History], rows: Sequence[RunSummary]
) -> list[Path]:
    """Write every history and the comparison CSV under ``path``; the files written.

    ``path`` ending in ``.json`` or ``.csv`` names the format and the stem of
    ``<stem>-<run><suffix>`` files beside it; else ``path`` is a folder of JSON files.
    """
    path = Path(path)
    if path.suffix in (".json", ".csv"):
        folder, stem, suffix = path.parent, f"{path.stem}-", path.suffix
    else:
        folder, stem, suffix = path, "", ".json"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, history in histories.items():
        target = folder / f"{stem}{_slug(name)}{suffix}"
        if suffix == ".json":
            history.to_json(target)
        else:
            history.to_csv(target)
        written.append(target)
    table = folder / f"{stem}comparison.csv"
    frame(rows).to_csv(table, index=False)
    return [*written, table]


def settings_rows(session: Any) -> list[tuple[str, str]]:
    """(setting, value) pairs: the model, the mode, the training config, the thresholds."""
    out = []
    if session.model is not None:
        n_params = sum(p.numel() for p in session.model.parameters())
        out.append(("model", f"{type(session.model).__name__}, {n_params:,} parameters"))
    out.append(("mode", _mode(session)))
    if session.data is not None:  # the config trained these runs; an own loop has its own
        config = session.config
        out += [(f.name, _text(getattr(config, f.name))) for f in fields(config)]
    limits = ", ".join(f"{k}={v:g}" for k, v in asdict(session.thresholds).items())
    out.append(("diagnosis thresholds", limits))
    return out


def versions() -> str:
    """ "gradwidget 0.3.0 · torch 2.13.0 · ..." for the packages that drew a report."""
    from .. import __version__

    others = (f"{name} {_version(name)}" for name in _PACKAGES)
    return " · ".join((f"gradwidget {__version__}", *others))


def _mode(session: Any) -> str:
    if session.recorder is not None:
        return "your own training loop (panel.capture)"
    if session.logs:
        return f"following {len(session.logs)} log(s) on disk"
    return f"managed: {len(session.runs)} run(s), each on a fresh copy of the model, same seed"


def _text(value: Any) -> str:
    if value is None:
        return "default"
    if callable(value):  # an optimizer factory or a loss function
        return getattr(value, "__qualname__", None) or type(value).__name__
    return str(value)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # e.g. a source checkout on the path, not installed
        return "?"


def _slug(name: str) -> str:
    """A file-name-safe form of a run name ("ReLU + He init" -> "ReLU_He_init")."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "run"
