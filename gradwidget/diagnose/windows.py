"""Windows in steps: the last part of a run, however sparsely a series was sampled.

A recorder under a time budget captures the first steps densely and later ones sparsely, so
"the last 20 points" of a gradient series can be mostly the first steps of the run (a healthy
net was once diagnosed by its step-30 loss). Every rule therefore picks its points by step:
the last ``window_fraction`` of the steps seen, at least ``window`` steps.
"""

from __future__ import annotations

import math

import numpy as np

from ..history import History, Series
from .findings import Thresholds

__all__ = ["last_step", "recent", "span", "window_medians"]

# Series whose last step tells how far a run got (the every-step loss first).
_PROGRESS = ("train_loss", "loss", "grad_norm")


def last_step(history: History) -> int:
    """The newest step any progress series recorded (-1 for an empty history)."""
    ends = [s.steps[-1] for name in _PROGRESS if len(s := history.series(name))]
    return int(max(ends, default=-1))


def span(last: int, fraction: float, at_least: int) -> int:
    """Steps in the last ``fraction`` of a run that reached step ``last``, at least
    ``at_least`` (steps count from 0, so ``last + 1`` were seen)."""
    return max(math.ceil(fraction * (last + 1)), at_least)


def recent(
    steps: np.ndarray, last: int, t: Thresholds, fraction: float | None = None, at_least: int = 0
) -> slice:
    """Rows of a series (at ``steps``) inside the window of a run that reached step ``last``.

    The window is the last ``fraction`` of the steps (default ``t.window_fraction``), at least
    ``at_least`` steps (default ``t.window``). A series sampled too sparsely to have
    ``min_samples`` rows there gets its window grown back to that many rows, but never further
    back than the last ``window_limit`` of the run: beyond that it speaks of another phase of
    training, and the rule stays silent.
    """
    fraction = t.window_fraction if fraction is None else fraction
    first = last + 1 - span(last, fraction, at_least or t.window)
    start = int(np.searchsorted(steps, first))
    if len(steps) - start < t.min_samples:
        floor = last + 1 - span(last, t.window_limit, at_least or t.window)
        start = max(min(start, len(steps) - t.min_samples), int(np.searchsorted(steps, floor)))
    return slice(max(start, 0), len(steps))


def window_medians(series: Series, last: int, t: Thresholds) -> np.ndarray:
    """Per-column median of the finite values in the window; NaN where fewer than
    ``min_samples``."""
    tail = series.last[recent(series.steps, last, t)].astype(np.float64)
    finite = np.isfinite(tail)
    enough = finite.sum(axis=0) >= t.min_samples
    medians = np.full(tail.shape[1], np.nan)
    if finite.all():  # the usual case; nanmedian is about 10x slower
        return np.median(tail, axis=0) if tail.shape[0] >= t.min_samples else medians
    if enough.any():  # nanmedian only on columns that have data: no all-NaN warnings
        medians[enough] = np.nanmedian(np.where(finite, tail, np.nan)[:, enough], axis=0)
    return medians
