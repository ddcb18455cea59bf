"""Fixtures shared by the test modules."""

from __future__ import annotations

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
