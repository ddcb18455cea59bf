"""One comparison row per run: the numbers the demo prints and the panel's table shows.

Computed from a run's :class:`~gradwidget.History` only (numpy), so a console, a DataFrame and
an HTML table all report the same values for the same run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from ..history import History
from ..remedies import SETTINGS_NAMES
from ..train.settings import ScaledLR, TrainConfig

if TYPE_CHECKING:
    from ..train.training import Run

__all__ = [
    "COLUMNS",
    "RunSummary",
    "default_threshold",
    "format_table",
    "summarize",
    "summarize_history",
]

_RATIO_POINTS = 10  # the gradient ratio is a median over this many recent samples: one is noise


@dataclass(frozen=True)
class RunSummary:
    """The numbers that compare two runs.

    Attributes
    ----------
    run : str
        Run name.
    remedies : str
        The remedies it used, comma-separated ("" for none).
    final_loss : float
        Loss at the last recorded step (NaN when nothing was recorded).
    accuracy : float
        Last test accuracy, else last training-batch accuracy, else NaN.
    grad_ratio : float
        First layer's gradient norm over the last layer's, median over the last recorded
        steps: far below 1 means vanishing gradients, far above 1 exploding ones.
    steps_to_threshold : int or None
        First recorded step at which the loss was at or below the threshold (None: never).
    wall_time_s : float
        Seconds the run trained, pauses excluded.
    training : str
        The settings its training remedies set (e.g. ``"lr 5, clip 1"``); "" without any.
    """

    run: str
    remedies: str
    final_loss: float
    accuracy: float
    grad_ratio: float
    steps_to_threshold: int | None
    wall_time_s: float
    training: str = ""


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunSummary))


def default_threshold(history: History) -> float:
    """Half the first recorded loss of ``history``: a bar every compared run can aim at."""
    loss = history.loss
    return 0.5 * float(loss[0]) if len(loss) else math.nan


def summarize(run: Run, remedies: Sequence[str] = (), threshold: float | None = None) -> RunSummary:
    """Summarise a :class:`~gradwidget.Run` (finished or still going).

    Parameters
    ----------
    run : Run
        The run; its ``history`` and ``wall_time`` are read.
    remedies : sequence of str
        Remedy names applied to the run's model, for the table.
    threshold : float or None
        Loss bar of ``steps_to_threshold``; ``None``: half this run's first loss. Pass the
        baseline's :func:`default_threshold` to compare runs against the same bar.
    """
    history = run.history
    if threshold is None:
        threshold = default_threshold(history)
    training = _settings_text(run.config) if set(remedies) & set(SETTINGS_NAMES) else ""
    return summarize_history(run.name, remedies, history, run.wall_time, threshold, training)


def summarize_history(
    name: str,
    remedies: Sequence[str],
    history: History,
    wall_time: float,
    threshold: float,
    training: str = "",
) -> RunSummary:
    """Summarise a recorded ``history`` (for runs known only by their history)."""
    loss = history.loss_curve()
    return RunSummary(
        run=name,
        remedies=", ".join(remedies),
        final_loss=float(loss.last[-1, 0]) if len(loss) else math.nan,
        accuracy=_last(history, "test_accuracy", "accuracy"),
        grad_ratio=_grad_ratio(history.grad_norm),
        # lo: a loss that dipped below the bar inside a merged bucket still counts.
        steps_to_threshold=_first_step_at_or_below(loss.steps, loss.lo[:, 0], threshold),
        wall_time_s=float(wall_time),
        training=training,
    )


def format_table(rows: Sequence[RunSummary]) -> str:
    """The rows as a plain-text table with aligned columns (3 significant digits).

    The training column is left out when no run used a training remedy.
    """
    header = ("run", "remedies", "final loss", "accuracy", "grad ratio", "steps to bar",
              "time s", "training")  # fmt: skip
    shown = [i for i, c in enumerate(COLUMNS) if c != "training" or any(r.training for r in rows)]
    table = [header] + [
        tuple(_cell(name, v) for name, v in zip(COLUMNS, astuple(r), strict=True)) for r in rows
    ]
    cells = [tuple(row[i] for i in shown) for row in table]
    widths = [max(len(row[i]) for row in cells) for i in range(len(shown))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _settings_text(config: TrainConfig) -> str:
    """What training remedies set: the learning rate (or its factor) and the clipping norm."""
    if isinstance(config.optimizer, ScaledLR):
        text = f"lr x{config.optimizer.factor:g}"
    else:
        text = "own optimizer" if callable(config.optimizer) else f"lr {config.lr:g}"
    return text + (f", clip {config.clip_grad:g}" if config.clip_grad is not None else "")


def _cell(column: str, value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column == "accuracy":
        return f"{value:.1%}"
    if column == "wall_time_s":
        return f"{value:.2f}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


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


def _first_step_at_or_below(steps: np.ndarray, loss: np.ndarray, threshold: float) -> int | None:
    hits = np.flatnonzero(loss <= threshold)
    return int(steps[hits[0]]) if hits.size else None
