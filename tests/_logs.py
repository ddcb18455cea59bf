"""A log writer following a History of stand-in layers: logs without training anything."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from torch import nn

from gradwidget.history import History
from gradwidget.logs.writer import LogWriter


def log_writer(folder: Path, names: tuple[str, ...], **options: Any) -> tuple[LogWriter, History]:
    """A writer following a fresh History of layers ``names`` (each an nn.Linear(2, 3))."""
    writer = LogWriter(folder, **options)
    layer = nn.Linear(2, 3)
    layers = [
        SimpleNamespace(name=n, module=layer, params=tuple(layer.parameters())) for n in names
    ]
    history = History(names)
    writer.start(layers, history)
    return writer, history
