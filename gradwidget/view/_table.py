"""One comparison row per run, computed from its History (view-free: numpy only)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np

from ..history import History

__all__ = ["COLUMNS", "RunSummary", "default_threshold", "summarize", "to_html"]

_RATIO_POINTS = 10  # the grad-norm ratio is a median over this many recent steps: one is noise


@dataclass(frozen=True)
class RunSummary:
    """The numbers that compare two runs.

    Attributes
    ----------
    run, remedies : str
        Run name and the remedies it used ("" for none).
    final_loss : float
        Loss at the last recorded step (NaN when nothing was recorded).
    accuracy : float
        Last test accuracy, else last training-batch accuracy, else NaN.
    grad_ratio : float
        First layer's gradient norm over the last layer's, median over the last steps:
        far below 1 means vanishing gradients, far above 1 exploding ones.
    steps_to_threshold : int or None
        First step at which the loss was at or below the shared threshold (None: never).
    wall_time_s : float
        Seconds the run trained.
    """

    run: str
    remedies: str
    final_loss: float
    accuracy: float
    grad_ratio: float
    steps_to_threshold: int | None
    wall_time_s: float


COLUMNS = tuple(f.name for f in fields(RunSummary))


def default_threshold(history: History) -> float:
    """Half the first recorded loss of ``history`` (the baseline): a bar every run can aim at."""
    loss = history.loss
    return 0.5 * float(loss[0]) if len(loss) else math.nan


def summarize(
    name: str, remedies: Sequence[str], history: History, wall_time: float, threshold: float
) -> RunSummary:
    """Summarise one run's ``history`` for the comparison table."""
    loss = history.series("loss")
    return RunSummary(
        run=name,
        remedies=", ".join(remedies),
        final_loss=float(loss.last[-1, 0]) if len(loss) else math.nan,
        accuracy=_last(history, "test_accuracy", "accuracy"),
        grad_ratio=_grad_ratio(history.grad_norm),
        steps_to_threshold=_first_step_below(loss.steps, loss.lo[:, 0], threshold),
        wall_time_s=float(wall_time),
    )


def _last(history: History, *names: str) -> float:
    for name in names:
        values = history.series(name).last[:, 0]
        if len(values):
            return float(values[-1])
    return math.nan


def _grad_ratio(grad_norm: np.ndarray) -> float:
    recent = grad_norm[-_RATIO_POINTS:]
    if recent.shape[0] == 0 or recent.shape[1] == 0:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = recent[:, 0].astype(np.float64) / recent[:, -1]
    finite = ratios[np.isfinite(ratios)]
    return float(np.median(finite)) if finite.size else math.nan


def _first_step_below(steps: np.ndarray, loss: np.ndarray, threshold: float) -> int | None:
    hits = np.flatnonzero(loss <= threshold)
    return int(steps[hits[0]]) if hits.size else None


def to_html(rows: Sequence[RunSummary]) -> str:
    """A small HTML table of ``rows`` (numbers to 3 significant digits)."""
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in astuple(row)) + "</tr>" for row in rows
    )
    style = "border-collapse:collapse;font-size:12px"
    return f'<table style="{style}"><tr>{head}</tr>{body}</table>'


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3g}"
    return html.escape(str(value))
