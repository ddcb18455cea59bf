"""gradwidget: see and fix vanishing gradients inside the notebook.

The data side (recorder, history, diagnosis, remedies, training) needs only torch and numpy.
The panel (``GradPanel``, ``watch``) is imported on first use, so scripts never load the UI.
"""

from __future__ import annotations

from typing import Any

from . import datasets, models, remedies
from .diagnose import structure
from .diagnose.rules import Finding, Severity, Thresholds, diagnose
from .diagnose.structure import Group, LayerInfo, Structure, grouped_history, layer_groups
from .errors import DataError, GradWidgetError, RemedyNotApplicable, TrainingError
from .history import History, Series
from .logs.reader import open_log
from .record.recorder import Recorder
from .remedies import apply_remedies
from .session import Session
from .session.autofix import autofix
from .train.training import Run, RunState, TrainConfig, train

__version__ = "0.3.4"

__all__ = [
    "DataError",
    "Finding",
    "GradPanel",
    "GradWidgetError",
    "Group",
    "History",
    "LayerInfo",
    "Recorder",
    "RemedyNotApplicable",
    "Run",
    "RunState",
    "Series",
    "Session",
    "Severity",
    "Structure",
    "Thresholds",
    "TrainConfig",
    "TrainingError",
    "apply_remedies",
    "autofix",
    "datasets",
    "diagnose",
    "explore",
    "grouped_history",
    "layer_groups",
    "models",
    "open_log",
    "remedies",
    "structure",
    "train",
    "watch",
]

_VIEW_NAMES = frozenset({"GradPanel", "explore", "watch"})


def __getattr__(name: str) -> Any:
    # The view pulls in ipywidgets and bqplot; load it only when a notebook asks for it.
    if name in _VIEW_NAMES:
        from . import view

        return getattr(view, name)
    raise AttributeError(f"module 'gradwidget' has no attribute {name!r}")
