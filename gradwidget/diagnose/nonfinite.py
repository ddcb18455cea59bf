"""The ``non_finite`` rule: a NaN or Inf anywhere in the run, unless a GradScaler handled it.

A NaN or Inf is never noise, so this rule reads the whole run, not a window; min/max buckets
keep one bad step through any amount of compaction.
"""

from __future__ import annotations

import numpy as np

from ..history import History
from ._text import listing
from .findings import Finding, Thresholds, make_finding

__all__ = ["non_finite"]

_AMP_SKIP_RUN = 10  # more steps in a row skipped by a GradScaler than backing off needs
_AMP_SCALE_FLOOR = 1.0  # a loss scale below 1 no longer protects anything: it has collapsed


def _skipped_by_scaler(history: History, steps: np.ndarray) -> np.ndarray:
    """Which buckets ending at ``steps`` hold a step that a GradScaler skipped by design.

    Under AMP an Inf/NaN gradient makes the scaler skip the step and halve its scale: that is
    the mechanism working, not a failure, unless the skips persist (more than
    ``_AMP_SKIP_RUN`` in a row, the longest run kept in ``amp_skipped``'s hi) or the scale
    collapses below ``_AMP_SCALE_FLOOR``. A bucket covers the steps since the bucket before.
    """
    at = history.series("amp_skipped").steps
    if at.size == 0 or _persistent_skips(history).size:
        return np.zeros(len(steps), bool)
    starts = np.concatenate([[-1], steps[:-1]])
    return np.searchsorted(at, steps, "right") > np.searchsorted(at, starts, "right")


def _persistent_skips(history: History) -> np.ndarray:
    """Steps a GradScaler skipped, when the skips persist or the scale collapsed; else none."""
    skipped, scale = history.series("amp_skipped"), history.series("amp_scale")
    persists = skipped.hi.max(initial=0) > _AMP_SKIP_RUN
    if persists or scale.lo.min(initial=np.inf) < _AMP_SCALE_FLOOR:
        return skipped.steps
    return np.zeros(0, np.int64)


def non_finite(history: History, t: Thresholds) -> Finding | None:
    counts, loss = history.series("nonfinite"), history.series("loss")
    # hi keeps a bucket's largest count, so one bad step survives any amount of compaction.
    worst_counts = np.nan_to_num(counts.hi)  # NaN: a layer without gradient, nothing counted
    worst_counts[_skipped_by_scaler(history, counts.steps)] = 0.0
    bad_rows, bad_layers = (worst_counts > 0).any(axis=1), (worst_counts > 0).any(axis=0)
    # NaN can hide in a merged bucket (fmax ignores it), but an Inf or a NaN "last" cannot.
    bad_loss = ~(np.isfinite(loss.last) & np.isfinite(loss.lo) & np.isfinite(loss.hi)).all(1)
    bad_loss &= ~_skipped_by_scaler(history, loss.steps)
    skips = _persistent_skips(history)
    steps = np.concatenate([counts.steps[bad_rows], loss.steps[bad_loss], skips])
    if steps.size == 0:
        return None
    worst = float(worst_counts.max(initial=0.0))
    where = ["the loss"] if bad_loss.any() else []
    if skips.size:
        where.append(f"the scaled gradients of {skips.size} steps the GradScaler skipped")
    if worst:
        per_layer = worst_counts.max(axis=0)
        where.insert(0, f"the gradients of {listing(history, bad_layers, per_layer, '.0f')}")
    message = (
        f"NaN/Inf values appeared by step {steps.min()} in {' and '.join(where)}. This is "
        "never noise: once a NaN reaches the weights, every later output is NaN. The usual "
        "cause is a learning rate too large for the gradient's scale: each update overshoots "
        "and the loss grows until float32 overflows. Lower the learning rate (e.g. 10x) or "
        "clip gradients; BatchNorm lets a network tolerate larger steps."
    )
    evidence = {
        "first_step": float(steps.min()),
        "nonfinite_entries": worst,
        "loss_nonfinite": float(bad_loss.any()),
    }
    return make_finding("non_finite", history, bad_layers, evidence, message)
