"""Fixtures shared by the test modules."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import gradwidget as gw

# Two torch threads beside a busy browser or kernel slow small ops about 200x (docs/performance.md).
torch.set_num_threads(1)


@pytest.fixture
def panels() -> Iterator[Callable[..., gw.GradPanel]]:
    """Make panels that are closed after the test, whatever happens."""
    made: list[gw.GradPanel] = []

    def make(*args: Any, **kwargs: Any) -> gw.GradPanel:
        made.append(gw.GradPanel(*args, **kwargs))
        return made[-1]

    yield make
    for panel in made:
        panel.close()


@pytest.fixture
def widgets_made_off_thread(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Types of the widgets opened off the kernel's (main) thread during the test: a bqplot
    view made from another thread can reach the browser before the models it refers to."""
    import ipywidgets as w

    made: list[str] = []
    original = w.Widget.open

    def open_and_note(self: w.Widget) -> None:
        if threading.current_thread() is not threading.main_thread():
            made.append(type(self).__name__)
        original(self)

    monkeypatch.setattr(w.Widget, "open", open_and_note)
    return made
