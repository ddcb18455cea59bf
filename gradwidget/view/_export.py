"""A panel's runs as data: their histories, comparison rows as a DataFrame, or files."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..history import History
from ..train.summary import RunSummary, default_threshold, summarize

__all__ = ["OWN_LOOP_NAME", "frame", "histories", "summaries", "write"]

OWN_LOOP_NAME = "your training loop"


def histories(records: Sequence[Any], recorder: Any = None) -> dict[str, History]:
    """A snapshot of each run's history by run name; the recorder's alone for an own loop."""
    if recorder is not None:
        return {OWN_LOOP_NAME: recorder.history}
    return {r.name: r.history for r in records}


def summaries(records: Sequence[Any], loss_threshold: float | None) -> list[RunSummary]:
    """A row per run record; the loss threshold defaults to half the first run's first loss."""
    if loss_threshold is None and records:
        loss_threshold = default_threshold(records[0].history)
    return [summarize(r.run, r.remedies, loss_threshold) for r in records]


def frame(rows: Sequence[RunSummary]) -> Any:
    """The rows as a pandas DataFrame that a notebook shows as the table in words (pandas is
    imported only here)."""
    from ._frame import Comparison

    return Comparison.of(rows)


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


def _slug(name: str) -> str:
    """A file-name-safe form of a run name ("ReLU + He init" -> "ReLU_He_init")."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "run"
