"""Errors gradwidget raises on purpose. Each message says what is wrong and what to do."""

from __future__ import annotations

__all__ = ["DataError", "GradWidgetError", "RemedyNotApplicable", "TrainingError"]


class GradWidgetError(Exception):
    """Base class: a problem gradwidget explains in plain words rather than a traceback."""


class RemedyNotApplicable(GradWidgetError):
    """A remedy has nothing to change on this model, or cannot change it safely."""


class DataError(GradWidgetError):
    """The data cannot be trained on as given (empty, wrong shape, wrong dtype, NaN)."""


class TrainingError(GradWidgetError):
    """Training failed: the model, the loss or the optimizer raised or misbehaved."""
